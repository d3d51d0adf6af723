// Package sharding maps keys to partitions and partitions to members.
//
// A key's partition is xxhash64(key) mod P, fixed for the life of a
// cluster. Partitions are placed on members with a bounded-load consistent
// hash ring (github.com/buraksezer/consistent): no member owns more than
// ⌈Load × P / M⌉ partitions, and a membership change moves close to the
// ideal number of partitions. The package is pure: every worker that sees
// the same members computes the same placement.
package sharding
