// Package sharding maps keys to partitions and partitions to members.
//
// A key's partition is xxhash64(key) mod P, fixed for the life of a
// cluster. Partitions are placed on members with a bounded-load consistent
// hash ring (github.com/buraksezer/consistent, 100 virtual nodes per
// member, its Load set to Config.Load, 1.10 by default): a partition goes to
// the member of the next virtual node on the ring, or walks on to the next
// one while that member holds ⌈Load × P / M⌉ already. The placement then
// checks that bound itself: a partition whose ring owner is over it would go
// to the next member the ring lists for it (GetClosestNForPartition) with
// room. A membership change moves somewhat more than the partitions the
// newcomer takes or the leaver held; docs/scaling.md measures how much. The
// package is pure: every worker that sees the same members computes the
// same placement.
package sharding
