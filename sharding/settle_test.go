package sharding

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSettleHistories walks random histories of joins and leaves (the
// placement depends on the one before, so the grid's one step from a first
// placement is not enough) and checks every step: each member holds
// ⌊P/N⌋ or ⌈P/N⌉, a join moves the newcomer's share and nothing else, a
// leave what the leaver held and nothing else.
func TestSettleHistories(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(21, 7))
	for _, p := range gridPartitions {
		names := 0
		newName := func() string { names++; return fmt.Sprintf("w%d-%d", names, rng.Uint32()) }
		members := []string{newName()}
		r := settled(t, nil, p, members)
		for step := range 300 {
			before := slices.Clone(members)
			var left string
			if len(members) > 1 && (len(members) >= 100 || rng.IntN(2) == 0) {
				i := rng.IntN(len(members))
				left = members[i]
				members = slices.Delete(members, i, i+1)
			} else {
				members = append(members, newName())
			}
			next := settled(t, r, p, members)
			checkShares(t, next, p, len(members))
			moves := Moves(r, next)
			if left != "" {
				held := len(r.PartitionsOf(left))
				for _, m := range moves {
					if m.From != left {
						t.Fatalf("P=%d step %d: %s left, yet partition %d moved from %s to %s", p, step, left, m.Partition, m.From, m.To)
					}
				}
				if len(moves) != held {
					t.Fatalf("P=%d step %d: %s left holding %d, %d moved", p, step, left, held, len(moves))
				}
			} else {
				joiner := members[len(members)-1]
				for _, m := range moves {
					if m.To != joiner {
						t.Fatalf("P=%d step %d: %s joined, yet partition %d moved from %s to %s", p, step, joiner, m.Partition, m.From, m.To)
					}
				}
				if got := len(next.PartitionsOf(joiner)); len(moves) != got || got > int(math.Ceil(float64(p)/float64(len(members)))) {
					t.Fatalf("P=%d step %d: %s joined and holds %d; %d moved", p, step, joiner, got, len(moves))
				}
			}
			if again := settled(t, r, p, before); len(Moves(r, again)) != 0 {
				t.Fatalf("P=%d step %d: settling the same members moved %d partitions", p, step, len(Moves(r, again)))
			}
			r = next
		}
	}
}

// checkShares fails unless every one of n members holds ⌊p/n⌋ or ⌈p/n⌉
// partitions and every partition has an owner.
func checkShares(t *testing.T, r *Ring, p, n int) {
	t.Helper()
	lo, hi := p/n, (p+n-1)/n
	for id, l := range r.Loads() {
		if l < lo || l > hi {
			t.Fatalf("P=%d N=%d: %s holds %d, want %d to %d", p, n, id, l, lo, hi)
		}
	}
	for q := range p {
		if r.OwnerOf(q) == "" {
			t.Fatalf("P=%d N=%d: partition %d has no owner", p, n, q)
		}
	}
}

// TestSettleReshard: after a reshard (P → k×P) every partition that
// existed keeps its owner, and the shares are even again.
func TestSettleReshard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, from, to int }{{3, 64, 256}, {7, 64, 256}, {10, 256, 1024}, {5, 64, 128}} {
		members := memberIDs(tc.n)
		r := settled(t, nil, tc.from, members)
		next := settled(t, r, tc.to, members)
		checkShares(t, next, tc.to, tc.n)
		for p := range tc.from {
			if next.OwnerOf(p) != r.OwnerOf(p) {
				t.Errorf("%d → %d partitions on %d members: partition %d moved from %s to %s", tc.from, tc.to, tc.n, p, r.OwnerOf(p), next.OwnerOf(p))
			}
		}
		moved := 0
		for q := range tc.to {
			if next.OwnerOf(q) != r.OwnerOf(q%tc.from) {
				moved++
			}
		}
		t.Logf("%d → %d partitions on %d members: %d children placed away from their parent's owner", tc.from, tc.to, tc.n, moved)
	}
}

// TestSettleFirstIsRing: with no placement before, Settle starts from the
// ring's and moves only what evens the shares out.
func TestSettleFirstIsRing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, p int }{{3, 64}, {10, 1024}, {100, 4096}} {
		members := memberIDs(tc.n)
		ring := mustRing(t, tc.p, members)
		s := settled(t, nil, tc.p, members)
		checkShares(t, s, tc.p, tc.n)
		over := 0
		for _, l := range ring.Loads() {
			over += max(0, l-(tc.p+tc.n-1)/tc.n)
		}
		if moved := len(Moves(ring, s)); moved > over+tc.n {
			t.Errorf("N=%d P=%d: %d partitions differ from the ring's placement, whose members are %d over their shares", tc.n, tc.p, moved, over)
		}
	}
}

func TestPlacedRejectsStrangers(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Partitions = 2
	if _, err := Placed(cfg, []string{"a"}, []string{"a", "b"}); err == nil {
		t.Error("a placement naming a non-member was taken")
	}
	if _, err := Placed(cfg, []string{"a"}, []string{"a"}); err == nil {
		t.Error("a placement of the wrong length was taken")
	}
	if r, err := Placed(cfg, []string{"a", "b"}, []string{"b", ""}); err != nil || r.OwnerOf(0) != "b" || r.OwnerOf(1) != "" {
		t.Errorf("Placed = %v, %v", r, err)
	}
}
