package sharding

import "github.com/cespare/xxhash/v2"

// DefaultPartitions is the partition count of a new cluster: enough for
// tens of workers to get an even share, small enough that a worker's one
// blocking read over all its streams stays cheap.
const DefaultPartitions = 64

// MaxPartitions bounds P; every partition is a stream and a lease in Redis.
const MaxPartitions = 1 << 16

// PartitionOf returns the partition of key among p partitions. It is the
// same function the ring uses, so PartitionOf(k, p) == ring.PartitionOfKey(k).
func PartitionOf(key string, p int) int {
	return int(xxhash.Sum64String(key) % uint64(p))
}
