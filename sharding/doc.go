// Package sharding maps keys to partitions and partitions to members.
//
// A key's partition is xxhash64(key) mod P, fixed for the life of a
// cluster. Partitions are placed on members by rendezvous hashing with a
// cap: each (partition, member) pair has a score that depends on those two
// alone, and each partition goes to its best-scoring member that is not yet
// full, no member holding more than ⌈Load × P / M⌉ partitions (Load 1.10 by
// default). A membership change moves little more than the partitions the
// newcomer wins or the leaver held; docs/scaling.md measures how much more.
// The package is pure: every worker that sees the same members computes the
// same placement.
package sharding
