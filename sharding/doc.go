// Package sharding maps keys to partitions and partitions to members.
//
// A key's partition is xxhash64(key) mod P, fixed for the life of a
// cluster (or until a reshard multiplies P).
//
// Settle places partitions on members given the placement before: every
// member holds ⌊P/N⌋ or ⌈P/N⌉, a join moves only the newcomer's share and a
// leave only what the leaver held. Workers keep its result in Redis so they
// all use the same one (internal/lease.Layout); docs/scaling.md measures it.
//
// NewRing places partitions from the member set alone, with a bounded-load
// consistent hash ring (github.com/buraksezer/consistent, 100 virtual nodes
// per member, its Load set to Config.Load, 1.10 by default): a partition
// goes to the member of the next virtual node on the ring, or walks on to
// the next one while that member holds ⌈Load × P / M⌉ already, and a
// partition whose ring owner is over that bound goes to the next member the
// ring lists for it (GetClosestNForPartition) with room. Settle starts from
// it when there is no placement before. The package is pure.
package sharding
