package sharding

import (
	"cmp"
	"container/heap"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// rankPlace is rendezvous hashing on ranks, with a cap: a placement kept
// here, beside the production ring (ringplace.go), to be measured against it
// (TestPlacerVariants, BenchmarkMembershipChange; docs/scaling.md gives the
// figures). It moves fewer partitions per change than the ring, but
// placement stays on the buraksezer/consistent ring.
//
// Every member puts the P partitions in an order of its own, a pseudo-random
// permutation keyed by its id alone (permutation below), so each member has
// exactly one partition at each position of its list. A partition's
// preference over the members is the position it has in their lists: it
// prefers the member that lists it earliest. Plain rendezvous hashing scores
// every (member, partition) pair independently, so the number of partitions
// a member is preferred by varies as much as a Poisson count (variance
// P/N); with one partition per position that variance halves (P/2N), so
// fewer members reach the cap and fewer partitions move when one changes.
//
// Then, in two passes:
//
//  1. every partition goes to the member that lists it earliest; a member
//     preferred by more than limit keeps the limit it lists earliest;
//  2. the partitions left over go, earliest listed first, each to the
//     member with room that lists it earliest.
//
// Everything depends on the member ids, P and limit alone, so every worker
// that sees the same members places alike, and nothing is remembered from
// one placement to the next.
func rankPlace(ids []string, cfg Config, limit int) []int32 {
	lists := memberLists(ids, cfg.Partitions)
	owners, preferred := firstChoices(lists, cfg.Partitions)
	loads, left := capPreferred(lists, preferred, limit)
	if len(left) > 0 {
		spill(lists, owners, loads, spilledPartitions(left), limit)
	}
	return owners
}

// memberLists is every member's list of the partitions.
func memberLists(ids []string, partitions int) []memberList {
	lists := make([]memberList, len(ids))
	for i, id := range ids {
		lists[i] = newMemberList(id, partitions)
	}
	return lists
}

// firstChoices gives every partition to the member that lists it
// earliest: the owners, and the partitions each member was given.
func firstChoices(lists []memberList, partitions int) (owners []int32, preferred [][]int32) {
	owners = make([]int32, partitions)
	preferred = make([][]int32, len(lists))
	for p := range partitions {
		best := 0
		for m := 1; m < len(lists); m++ {
			if lists[m].before(&lists[best], p) {
				best = m
			}
		}
		owners[p] = int32(best)
		preferred[best] = append(preferred[best], int32(p))
	}
	return owners, preferred
}

// spilled is a partition a member preferred by more than the cap let go,
// with the position at which that member lists it.
type spilled struct {
	position  uint64
	partition int
}

// capPreferred has a member given more than limit partitions keep the
// limit it lists earliest: the loads kept, and the partitions let go.
func capPreferred(lists []memberList, preferred [][]int32, limit int) (loads []int, left []spilled) {
	loads = make([]int, len(lists))
	for m, ps := range preferred {
		if len(ps) > limit {
			sortByPosition(ps, &lists[m])
			for _, p := range ps[limit:] {
				left = append(left, spilled{lists[m].position(int(p)), int(p)})
			}
			ps = ps[:limit]
		}
		loads[m] = len(ps)
	}
	return loads, left
}

// spilledPartitions is the partitions of left, in its order.
func spilledPartitions(left []spilled) []int {
	ps := make([]int, len(left))
	for i, l := range left {
		ps[i] = l.partition
	}
	return ps
}

// memberList is one member's order of the partitions.
type memberList struct {
	seed uint64 // xxhash of the id
	perm permutation
}

func newMemberList(id string, partitions int) memberList {
	seed := xxhash.Sum64String(id)
	return memberList{seed: seed, perm: newPermutation(seed, partitions)}
}

// position is where the member lists partition p, 0 first.
func (l *memberList) position(p int) uint64 { return l.perm.at(uint64(p)) }

// before tells whether l lists p earlier than o does. At the same position
// the rendezvous score of (member, p) decides, so the order of two members
// depends on those two alone; equal scores (never seen) keep o.
func (l *memberList) before(o *memberList, p int) bool {
	a, b := l.position(p), o.position(p)
	if a != b {
		return a < b
	}
	return score(l.seed, p) > score(o.seed, p)
}

// sortByPosition orders ps as l lists them.
func sortByPosition(ps []int32, l *memberList) {
	type listed struct {
		position  uint64
		partition int32
	}
	byPos := make([]listed, len(ps))
	for i, p := range ps {
		byPos[i] = listed{l.position(int(p)), p}
	}
	slices.SortFunc(byPos, func(a, b listed) int { return cmp.Compare(a.position, b.position) })
	for i, x := range byPos {
		ps[i] = x.partition
	}
}

// spill places the pending partitions on members with room: candidate
// (partition, member) pairs are taken earliest position first, a pair whose
// member has filled up since being re-aimed at the partition's next member
// with room. It records them in owners and loads.
func spill(lists []memberList, owners []int32, loads []int, pending []int, limit int) {
	best := func(p int) spillCandidate {
		c := spillCandidate{partition: p, member: -1}
		for m := range lists {
			if loads[m] >= limit {
				continue
			}
			if c.member < 0 || lists[m].before(&lists[c.member], p) {
				c.member = m
			}
		}
		c.position = lists[c.member].position(p)
		return c
	}
	h := make(spillHeap, len(pending))
	for i, p := range pending {
		h[i] = best(p)
	}
	heap.Init(&h)
	for h.Len() > 0 {
		c := h[0]
		if loads[c.member] >= limit {
			// Its member filled up since; the members it skips now
			// are full too, and stay full.
			h[0] = best(c.partition)
			heap.Fix(&h, 0)
			continue
		}
		owners[c.partition] = int32(c.member)
		loads[c.member]++
		heap.Pop(&h)
	}
}

type spillCandidate struct {
	position  uint64
	partition int
	member    int
}

// spillHeap is a min-heap on position; equal positions go to the lower
// partition.
type spillHeap []spillCandidate

func (h spillHeap) Len() int { return len(h) }
func (h spillHeap) Less(i, j int) bool {
	if h[i].position != h[j].position {
		return h[i].position < h[j].position
	}
	return h[i].partition < h[j].partition
}
func (h spillHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *spillHeap) Push(x any)   { *h = append(*h, x.(spillCandidate)) }
func (h *spillHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// permutation is a pseudo-random permutation of [0, n) keyed by a seed: a
// four-round Feistel network on the smallest even number of bits that holds
// n-1, walked along its cycle until it lands below n (cycle walking keeps it
// a permutation of [0, n); at most 4 × n values, so a few steps on average).
type permutation struct {
	keys [4]uint64
	half uint   // bits in each half
	mask uint64 // 1<<half - 1
	n    uint64
}

func newPermutation(seed uint64, n int) permutation {
	half := uint(1)
	for uint64(1)<<(2*half) < uint64(n) {
		half++
	}
	pm := permutation{half: half, mask: 1<<half - 1, n: uint64(n)}
	for i := range pm.keys {
		pm.keys[i] = mix64(seed + uint64(i+1)*0x9e3779b97f4a7c15)
	}
	return pm
}

func (pm *permutation) at(x uint64) uint64 {
	x = pm.round(x)
	for x >= pm.n {
		x = pm.round(x)
	}
	return x
}

func (pm *permutation) round(x uint64) uint64 {
	l, r := x>>pm.half, x&pm.mask
	for _, k := range pm.keys {
		l, r = r, (l^mix64(r^k))&pm.mask
	}
	return l<<pm.half | r
}

// mix64 is splitmix64's finalizer.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// TestPermutationIsABijection: every member's list holds each partition
// exactly once, whatever P (cycle walking when P is not a power of 4).
func TestPermutationIsABijection(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 3, 5, 63, 64, 65, 1000, 4096, 5000} {
		for seed := range uint64(4) {
			pm := newPermutation(mix64(seed), n)
			seen := make([]bool, n)
			for x := range n {
				y := pm.at(uint64(x))
				if y >= uint64(n) || seen[y] {
					t.Fatalf("n=%d seed=%d: %d maps to %d, out of range or taken", n, seed, x, y)
				}
				seen[y] = true
			}
		}
	}
}

// TestEveryMemberListsEveryPosition: how many partitions prefer a member
// spreads less than with independent scores, which is what the lists are
// for (docs/scaling.md: variance about P/2N instead of P/N).
func TestEveryMemberListsEveryPosition(t *testing.T) {
	t.Parallel()
	const partitions, n = 4096, 100
	ids := memberIDs(n)
	lists := make([]memberList, n)
	for i, id := range ids {
		lists[i] = newMemberList(id, partitions)
	}
	ranked, scored := make([]int, n), make([]int, n)
	for p := range partitions {
		b, s := 0, 0
		for m := 1; m < n; m++ {
			if lists[m].before(&lists[b], p) {
				b = m
			}
			if score(lists[m].seed, p) > score(lists[s].seed, p) {
				s = m
			}
		}
		ranked[b]++
		scored[s]++
	}
	variance := func(counts []int) float64 {
		mean := float64(partitions) / n
		var v float64
		for _, c := range counts {
			v += (float64(c) - mean) * (float64(c) - mean)
		}
		return v / n
	}
	vr, vs := variance(ranked), variance(scored)
	t.Logf("variance of the partitions preferring a member: %.1f by position, %.1f by independent score (P/N = %.1f)", vr, vs, float64(partitions)/n)
	if vr > 0.75*float64(partitions)/n {
		t.Errorf("by position the variance is %.1f, expected about P/2N = %.1f", vr, float64(partitions)/(2*n))
	}
}
