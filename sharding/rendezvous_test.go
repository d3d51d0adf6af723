package sharding

import (
	"container/heap"

	"github.com/cespare/xxhash/v2"
)

// place is the rendezvous placement with a cap that the ring-based one
// (ringplace.go) replaced; the tests keep it to compare the two.
//
// It gives each of partitions partitions a member, as an index into ids
// (sorted, distinct, non-empty), no member taking more than limit.
//
// It is rendezvous hashing with a cap: every (partition, member) pair has a
// pseudo-random score that depends on those two alone, and pairs are taken
// in descending score order, skipping a pair whose partition is placed or
// whose member is full. A partition goes to its best-scoring member that
// still has room, so a member that joins takes the pairs it wins and a member
// that leaves frees only its own; the cap only moves the overflow.
func place(ids []string, cfg Config, limit int) []int32 {
	partitions := cfg.Partitions
	owners := make([]int32, partitions)
	pending := make([]int, partitions)
	for p := range pending {
		pending[p] = p
	}
	fill(ids, owners, make([]int, len(ids)), pending, limit)
	return owners
}

// fill places the pending partitions as place does, on members already
// holding loads, and records them in owners and loads.
func fill(ids []string, owners []int32, loads []int, pending []int, limit int) {
	f := filler{ids: ids, seeds: make([]uint64, len(ids)), loads: loads, limit: limit}
	for i, id := range ids {
		f.seeds[i] = xxhash.Sum64String(id)
	}
	h := make(candidates, len(pending))
	for i, p := range pending {
		h[i] = f.best(p)
	}
	heap.Init(&h)
	for h.Len() > 0 {
		c := h[0]
		if f.loads[c.member] >= limit {
			// Its member filled up since; the members it skips now are
			// full too, and stay full.
			h[0] = f.best(c.partition)
			heap.Fix(&h, 0)
			continue
		}
		owners[c.partition] = int32(c.member)
		f.loads[c.member]++
		heap.Pop(&h)
	}
}

type filler struct {
	ids   []string
	seeds []uint64 // xxhash of each id
	loads []int
	limit int
}

// best is p's highest-scoring member that is not full; equal scores go to
// the greater id, so the choice depends on the member set alone.
func (f *filler) best(p int) candidate {
	c := candidate{partition: p, member: -1}
	for m, seed := range f.seeds {
		if f.loads[m] >= f.limit {
			continue
		}
		s := score(seed, p)
		if c.member < 0 || s > c.score || (s == c.score && f.ids[m] > f.ids[c.member]) {
			c.score, c.member = s, m
		}
	}
	return c
}

// score mixes a member's seed with a partition number (splitmix64's
// finalizer), so a member's scores are independent of every other member's.
func score(seed uint64, p int) uint64 {
	z := seed ^ (uint64(p)+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

type candidate struct {
	score     uint64
	partition int
	member    int
}

// candidates is a max-heap on score; equal scores go to the lower partition.
type candidates []candidate

func (h candidates) Len() int { return len(h) }
func (h candidates) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score > h[j].score
	}
	return h[i].partition < h[j].partition
}
func (h candidates) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candidates) Push(x any)   { *h = append(*h, x.(candidate)) }
func (h *candidates) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
