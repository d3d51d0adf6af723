// Package sharding maps keys to partitions and partitions to members.
//
// A key's partition is xxhash64(key) mod P, fixed for the life of a
// cluster (the partition github.com/buraksezer/consistent would give it).
// Partitions are placed on members by rendezvous hashing on ranks, with a
// cap (place.go): every member lists the P partitions in a pseudo-random
// order keyed by its id alone, each partition goes to the member that lists
// it earliest, and no member holds more than ⌈Load × P / M⌉ (Load 1.10 by
// default): a member preferred by more keeps the ones it lists earliest, and
// the others go to the member with room that lists them earliest. A
// membership change moves a little more than the partitions the newcomer
// takes or the leaver held; docs/scaling.md measures how much, against the
// bounded-load consistent-hash ring this replaced. The package is pure:
// every worker that sees the same members computes the same placement, and
// nothing carries over from one placement to the next.
package sharding
