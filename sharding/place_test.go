package sharding

import "testing"

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
