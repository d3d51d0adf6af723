// Package routing says which partition a key belongs to while the
// partition count changes (coordinator reshard).
//
// A cluster has P partitions and a key lives in xxhash(key) mod P. A
// reshard to N = k·P splits each partition p into its children p, p+P, …,
// p+(k−1)·P, one partition at a time: until p's split is done, p's keys
// stay in p; once it is done, each goes to xxhash(key) mod N. Every worker
// reads the same record (corral:meta and each partition's split mark) and
// so computes the same answer; one that has not read a split's end yet is
// refused by the partition's enqueue script and reads it again.
package routing

import (
	"slices"
	"sync/atomic"

	"github.com/corralhq/corral/sharding"
)

// View is the partition layout at one moment.
type View struct {
	P    int    // partitions the cluster has (before the reshard under way)
	N    int    // partitions a reshard under way goes to; 0: none
	Done []bool // during a reshard: Done[p] once partition p (< P) is split
	// Ready is true once every entity state is known to be indexed (see
	// store.PrepareReshard): splits wait for it.
	Ready bool
	// Prev is the partition count before the last reshard that ended, and
	// PriorUntil (unix ms) how long a key's partition under Prev is still
	// looked at for records of jobs finished before it (the dedup window).
	Prev       int
	PriorUntil int64
}

// Table holds the current View; every method is safe for concurrent use.
type Table struct{ v atomic.Pointer[View] }

// New returns a table of p partitions with no reshard.
func New(p int) *Table {
	t := &Table{}
	t.v.Store(&View{P: p})
	return t
}

// Load returns the current view (do not modify it).
func (t *Table) Load() *View { return t.v.Load() }

// Store installs v and reports whether it differs from the one before.
func (t *Table) Store(v View) bool {
	old := t.v.Swap(&v)
	return old == nil || !old.Equal(v)
}

// Equal reports whether two views route every key alike.
func (v View) Equal(o View) bool {
	return v.P == o.P && v.N == o.N && v.Ready == o.Ready && v.Prev == o.Prev && v.PriorUntil == o.PriorUntil &&
		slices.Equal(v.Done, o.Done)
}

// Resharding reports whether a reshard is under way.
func (v *View) Resharding() bool { return v.N > v.P }

// Partitions is the number of partitions that exist: N during a reshard
// (the children already have owners), else P. The ring places this many.
func (v *View) Partitions() int {
	if v.Resharding() {
		return v.N
	}
	return v.P
}

// split reports whether old partition p is split.
func (v *View) split(p int) bool { return v.Resharding() && p < len(v.Done) && v.Done[p] }

// PartitionOf is the partition of key.
func (v *View) PartitionOf(key string) int {
	p := sharding.PartitionOf(key, v.P)
	if v.split(p) {
		return sharding.PartitionOf(key, v.N)
	}
	return p
}

// Modulus is the partition count the keys routed to partition q were
// hashed by: what q's enqueue script checks against its split mark.
func (v *View) Modulus(q int) int {
	if !v.Resharding() {
		return v.P
	}
	if q >= v.P || v.split(q) {
		return v.N
	}
	return v.P
}

// Pending reports whether partition q is a child whose parent's split is
// not done: it has an owner but nothing to run yet.
func (v *View) Pending(q int) bool {
	return v.Resharding() && q >= v.P && !v.split(q%v.P)
}

// Moved reports whether any key may live elsewhere than before, at now
// (unix ms): a reshard is under way, or the last one's dedup window has
// not passed. When it is false, Parent is -1 for every key.
func (v *View) Moved(now int64) bool {
	return v.Resharding() || v.Prev > 0 && now < v.PriorUntil
}

// Parent is the partition a key routed to q lived in before q's split
// (the partition of the same key under the older count), or -1 when the
// key did not move or that is too long ago to matter (now unix ms).
// Records of the jobs it finished there stay there until they expire.
func (v *View) Parent(key string, q int, now int64) int {
	var old int
	switch {
	case v.Resharding() && v.split(sharding.PartitionOf(key, v.P)):
		old = sharding.PartitionOf(key, v.P)
	case !v.Resharding() && v.Prev > 0 && now < v.PriorUntil:
		old = sharding.PartitionOf(key, v.Prev)
	default:
		return -1
	}
	if old == q {
		return -1
	}
	return old
}

// Children lists the partitions old partition p splits into.
func (v *View) Children(p int) []int {
	if !v.Resharding() {
		return nil
	}
	out := make([]int, 0, v.N/v.P-1)
	for c := p + v.P; c < v.N; c += v.P {
		out = append(out, c)
	}
	return out
}

// Wrapper methods on the table, for callers that need one answer.

// PartitionOf is the current view's PartitionOf.
func (t *Table) PartitionOf(key string) int { return t.Load().PartitionOf(key) }

// Partitions is the current view's Partitions.
func (t *Table) Partitions() int { return t.Load().Partitions() }
