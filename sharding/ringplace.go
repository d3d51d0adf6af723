package sharding

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// placer gives each of cfg.Partitions partitions a member, as an index into
// ids (sorted, distinct, non-empty), no member taking more than limit.
type placer func(ids []string, cfg Config, limit int) []int32

type member string

func (m member) String() string { return string(m) }

type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// ringPlacer places partitions with a cap on top of a buraksezer/consistent
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

// ring is the buraksezer/consistent ring of ids, and each id's index.
func (rp ringPlacer) ring(ids []string, cfg Config) (*consistent.Consistent, map[string]int32) {
	n := len(ids)
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
	return consistent.New(ms, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    cfg.Partitions,
		ReplicationFactor: rp.replicas,
		Load:              load,
	}), index
}

func (rp ringPlacer) place(ids []string, cfg Config, limit int) []int32 {
	n, partitions := len(ids), cfg.Partitions
	c, index := rp.ring(ids, cfg)

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

// defaultPlacer is the placement NewRing uses: the ring's own bounded load,
// 100 virtual nodes per member (docs/scaling.md compares it with the other
// placements in TestPlacerVariants).
var defaultPlacer placer = ringPlacer{replicas: 100}.place
