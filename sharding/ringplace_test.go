package sharding

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

type member string

func (m member) String() string { return string(m) }

type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// ringPlacer is the placement NewRing used before stratifiedPlace
// (place.go); the tests keep it, and variants of it, to compare.
//
// It places partitions with a cap on top of a buraksezer/consistent
// ring: each partition's preference order of members is the one the ring
// gives (GetPartitionOwner first, then GetClosestNForPartition: the members
// that follow that owner), and each partition goes to the first member in
// that order that is not yet full.
type ringPlacer struct {
	// replicas is the ring's ReplicationFactor, virtual nodes per member.
	replicas int
	// unbounded gives the ring a Load it never reaches, so each partition's
	// first choice is the member of the next virtual node and the cap alone
	// does the bounding. Otherwise the ring bounds its owners itself at
	// cfg.Load (its bounded-load walk along the virtual nodes), and the
	// cap only catches a rounding of ⌈P/N × Load⌉ above the ring's.
	unbounded bool
	// byRing takes the partitions of one rank in the order of their ring
	// position instead of their number.
	byRing bool
	// spill, when set, places the partitions whose first choice is full
	// (pending, in rank-0 order) on members already holding loads, instead
	// of the ring's order of members. The tests set it to compare.
	spill func(ids []string, owners []int32, loads []int, pending []int, limit int)
}

func (rp ringPlacer) place(ids []string, cfg Config, limit int) []int32 {
	n, partitions := len(ids), cfg.Partitions
	ms := make([]consistent.Member, n)
	index := make(map[string]int32, n)
	for i, id := range ids {
		ms[i] = member(id)
		index[id] = int32(i)
	}
	load := cfg.Load
	if rp.unbounded {
		// Above N, ⌈P/N × Load⌉ exceeds P and never binds.
		load = float64(n) + 1
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    partitions,
		ReplicationFactor: rp.replicas,
		Load:              load,
	})

	order := make([]int, partitions)
	for p := range order {
		order[p] = p
	}
	if rp.byRing {
		// Where the ring puts partition p (consistent hashes its number).
		pos := make([]uint64, partitions)
		var b [8]byte
		for p := range pos {
			binary.LittleEndian.PutUint64(b[:], uint64(p))
			pos[p] = xxhash.Sum64(b[:])
		}
		slices.SortFunc(order, func(a, b int) int {
			if pos[a] != pos[b] {
				if pos[a] < pos[b] {
					return -1
				}
				return 1
			}
			return a - b
		})
	}

	owners := make([]int32, partitions)
	loads := make([]int, n)
	prefs := make(map[int][]consistent.Member)
	pending := order
	// Rank by rank: every partition tries its first choice, then those
	// left over their second, and so on. A member found full stays full, so
	// by rank N-1 a partition has tried every member, and N × limit ≥ P
	// leaves one with room.
	for rank := 0; len(pending) > 0; rank++ {
		if rank == 1 && rp.spill != nil {
			rp.spill(ids, owners, loads, pending, limit)
			break
		}
		if rank >= n {
			panic(fmt.Sprintf("sharding: %d partitions left without room after %d ranks", len(pending), rank))
		}
		var left []int
		for _, p := range pending {
			var m int32
			if rank == 0 {
				m = index[c.GetPartitionOwner(p).String()]
			} else {
				pref, ok := prefs[p]
				if !ok {
					var err error
					if pref, err = c.GetClosestNForPartition(p, n); err != nil {
						panic(fmt.Sprintf("sharding: preference order of partition %d: %v", p, err))
					}
					prefs[p] = pref
				}
				m = index[pref[rank].String()]
			}
			if loads[m] < limit {
				owners[p] = m
				loads[m]++
				continue
			}
			left = append(left, p)
		}
		pending = left
	}
	return owners
}

// stratifiedOnePass is the production placement's preference (positions in
// each member's own order of the partitions) with rendezvous's assignment:
// (partition, member) pairs earliest position first, skipping a pair whose
// partition is placed or whose member is full, instead of the production's
// two passes.
func stratifiedOnePass(ids []string, cfg Config, limit int) []int32 {
	lists := make([]memberList, len(ids))
	for i, id := range ids {
		lists[i] = newMemberList(id, cfg.Partitions)
	}
	owners := make([]int32, cfg.Partitions)
	pending := make([]int, cfg.Partitions)
	for p := range pending {
		pending[p] = p
	}
	spill(lists, owners, make([]int, len(ids)), pending, limit)
	return owners
}

// ringFirstStratified is the production placement with the first choice
// of each partition taken from a buraksezer/consistent ring instead
// (GetPartitionOwner of an unbounded ring with replicas virtual nodes per
// member): the member keeps the ones it lists earliest up to the cap, and
// the rest spill as in production.
type ringFirstStratified struct{ replicas int }

func (rf ringFirstStratified) place(ids []string, cfg Config, limit int) []int32 {
	n, partitions := len(ids), cfg.Partitions
	ms := make([]consistent.Member, n)
	index := make(map[string]int32, n)
	lists := make([]memberList, n)
	for i, id := range ids {
		ms[i] = member(id)
		index[id] = int32(i)
		lists[i] = newMemberList(id, partitions)
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    partitions,
		ReplicationFactor: rf.replicas,
		Load:              float64(n) + 1,
	})
	owners := make([]int32, partitions)
	preferred := make([][]int32, n)
	for p := range partitions {
		m := index[c.GetPartitionOwner(p).String()]
		owners[p] = m
		preferred[m] = append(preferred[m], int32(p))
	}
	loads := make([]int, n)
	var left []int
	for m, ps := range preferred {
		if len(ps) > limit {
			sortByPosition(ps, &lists[m])
			for _, p := range ps[limit:] {
				left = append(left, int(p))
			}
			ps = ps[:limit]
		}
		loads[m] = len(ps)
	}
	spill(lists, owners, loads, left, limit)
	return owners
}
