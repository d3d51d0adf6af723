package sharding

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The placement's promises, checked over the whole grid below (N members,
// P partitions; the ideal movement of a join is P/(N+1), of a leave what the
// leaver held), for every join and every leave tried:
//
//   - balance: no member owns more than ⌈1.10 × P/N⌉ partitions;
//   - where members hold 50 partitions or more (P/N ≥ 50), a join or a leave
//     moves at most ⌈1.50 × ideal⌉ partitions;
//   - below that, at most ⌊2.5 × ideal⌋ + 6. With few partitions per member
//     the bound binds on many members: the ring walks a partition whose
//     owner is full on to the next virtual node, so a change that fills or
//     frees one slot shifts the partitions after it, and a change of the
//     bound (⌈1.10 × P/N⌉ steps down as N grows) makes every member at it
//     hand one partition on.
//
// The tables also count the points where every change stays within
// ⌈1.25 × ideal⌉ (tightBound), to compare placements.
const (
	maxLoadBound    = 1.10
	movedBound      = 1.50
	movedBoundFewer = 2.5
	fewerSlack      = 6
	manyPerMember   = 50
	tightBound      = 1.25
)

var (
	gridMembers    = []int{2, 3, 4, 5, 7, 10, 16, 25, 50, 100}
	gridPartitions = []int{64, 256, 1024, 4096}
)

// cell is what one (members, partitions) point of the grid measured.
type cell struct {
	members, partitions int
	build               time.Duration // one NewRing plus Moves, averaged
	maxLoad, minLoad    int
	joins               []int   // partitions moved by each join tried
	joinIdeal           float64 // P/(N+1)
	leaves              []leave // each leave tried
}

type leave struct{ moved, held int }

func (c cell) mean() float64 { return float64(c.partitions) / float64(c.members) }

// memberIDs are names shaped like the ids workers register in Consul.
func memberIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("corral-worker-10.0.%d.%d-7070", i/250, i%250+1)
	}
	return out
}

func mustRing(t testing.TB, partitions int, members []string) *Ring {
	t.Helper()
	return mustRingWith(t, defaultPlacer, partitions, members)
}

func mustRingWith(t testing.TB, place placer, partitions int, members []string) *Ring {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Partitions = partitions
	r, err := newRing(cfg, members, place)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// stepper gives the placement that follows prev (nil for the first) when
// the members become members.
type stepper func(t testing.TB, prev *Ring, partitions int, members []string) *Ring

// fresh is the stepper of a placement that depends on the members alone.
func fresh(place placer) stepper {
	return func(t testing.TB, _ *Ring, partitions int, members []string) *Ring {
		return mustRingWith(t, place, partitions, members)
	}
}

// settled is the production stepper: Settle from the placement before.
func settled(t testing.TB, prev *Ring, partitions int, members []string) *Ring {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Partitions = partitions
	var before []string
	if prev != nil {
		before = prev.owners
	}
	owners, err := Settle(cfg, members, before)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Placed(cfg, members, owners)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// measureCell places p partitions on n members, then measures placements
// one join or one leave away from it (joiners: 5 new names; leavers: every
// member below 20 members, every ⌊n/10⌋-th from there on).
func measureCell(t testing.TB, step stepper, n, p int) cell {
	members := memberIDs(n + 5)
	base := members[:n]
	c := cell{members: n, partitions: p, minLoad: math.MaxInt}
	start := time.Now()
	r := step(t, nil, p, base)
	builds := 1
	for _, l := range r.Loads() {
		c.maxLoad = max(c.maxLoad, l)
		c.minLoad = min(c.minLoad, l)
	}
	c.joinIdeal = float64(p) / float64(n+1)
	for _, joiner := range members[n:] {
		next := step(t, r, p, append(base[:n:n], joiner))
		builds++
		c.joins = append(c.joins, len(Moves(r, next)))
	}
	every := max(1, n/10)
	for i := 0; i < n; i += every {
		rest := append(base[:i:i], base[i+1:]...)
		next := step(t, r, p, rest)
		builds++
		c.leaves = append(c.leaves, leave{moved: len(Moves(r, next)), held: len(r.PartitionsOf(base[i]))})
	}
	c.build = time.Since(start) / time.Duration(builds)
	return c
}

// limitFn is the most partitions a change of cell c with this ideal may move.
type limitFn func(c cell, ideal float64) int

// movedLimit is the ring's bound on the partitions a change with this
// ideal may move.
func movedLimit(c cell, ideal float64) int {
	if c.mean() >= manyPerMember {
		return int(math.Ceil(movedBound * ideal))
	}
	return int(movedBoundFewer*ideal) + fewerSlack
}

// tightLimit is ⌈1.25 × ideal⌉.
func tightLimit(_ cell, ideal float64) int { return int(math.Ceil(tightBound * ideal)) }

// worstJoin is the most partitions a join moved.
func (c cell) worstJoin() int { return slices.Max(c.joins) }

// worstLeave is the leave that moved the most per partition the leaver held.
func (c cell) worstLeave() leave {
	worst := c.leaves[0]
	for _, l := range c.leaves[1:] {
		if l.moved*max(worst.held, 1) > worst.moved*max(l.held, 1) {
			worst = l
		}
	}
	return worst
}

// within tells whether every join and leave of c moves at most what limit
// allows for its ideal.
func (c cell) within(limit limitFn) bool {
	if c.worstJoin() > limit(c, c.joinIdeal) {
		return false
	}
	for _, l := range c.leaves {
		if l.moved > limit(c, float64(l.held)) {
			return false
		}
	}
	return true
}

// check fails past the balance bound, and past limit for any change.
func (c cell) check(t *testing.T, limit limitFn) {
	t.Helper()
	if limit := int(math.Ceil(maxLoadBound * c.mean())); c.maxLoad > limit {
		t.Errorf("N=%d P=%d: a member owns %d partitions, bound ⌈%.2f × %.2f⌉ = %d", c.members, c.partitions, c.maxLoad, maxLoadBound, c.mean(), limit)
	}
	for _, moved := range c.joins {
		if limit := limit(c, c.joinIdeal); moved > limit {
			t.Errorf("N=%d P=%d: a join moved %d partitions, ideal %.2f, bound %d", c.members, c.partitions, moved, c.joinIdeal, limit)
		}
	}
	for _, l := range c.leaves {
		if limit := limit(c, float64(l.held)); l.moved > limit {
			t.Errorf("N=%d P=%d: a leave moved %d partitions, the leaver held %d, bound %d", c.members, c.partitions, l.moved, l.held, limit)
		}
	}
}

func (c cell) row() string {
	j, l := c.worstJoin(), c.worstLeave()
	mark := ""
	if !c.within(tightLimit) {
		mark = " *"
	}
	return fmt.Sprintf("| %d | %d | %s | %.2f | %.2f | %d / %.1f = %.2f | %d / %d = %.2f |%s",
		c.partitions, c.members, c.build.Round(time.Microsecond),
		float64(c.maxLoad)/c.mean(), float64(c.minLoad)/c.mean(),
		j, c.joinIdeal, float64(j)/c.joinIdeal,
		l.moved, l.held, float64(l.moved)/float64(max(l.held, 1)), mark)
}

// TestBalanceGrid sweeps members × partitions with the production
// placement (Settle from the placement before) and fails past the issue's
// bounds: ⌈1.10 × P/N⌉ partitions a member, ⌈1.25 × ideal⌉ moved by any
// join or leave. With -v it prints the table docs/scaling.md shows.
func TestBalanceGrid(t *testing.T) {
	t.Logf("production (settled):\n%s", gridTable(t, settled, tightLimit))
}

// TestRingGrid sweeps the ring alone (the first placement of a cluster,
// and what every placement was before Settle) against the looser bounds
// above.
func TestRingGrid(t *testing.T) {
	t.Logf("ring:\n%s", gridTable(t, fresh(defaultPlacer), movedLimit))
}

// placerVariants are the placements TestPlacerVariants compares with the
// production one.
var placerVariants = []struct {
	name  string
	place placer
}{
	{"rank-rendezvous", rankPlace},
	{"maglev", maglevPlace},
	{"rank-ringspill20", rankRingSpill{replicas: 20}.place},
	{"rank-ringspill100", rankRingSpill{replicas: 100}.place},
	{"rank-quota2", rankQuota(2)},
	{"rank-quota5", rankQuota(5)},
	{"rank-spill-by-loss", rankSpillByLoss},
	{"rank-margin", rankMargin},
	{"rank-cap1.00", rankAlpha(1.00)},
	{"rank-cap1.04", rankAlpha(1.04)},
	{"rank-cap1.08", rankAlpha(1.08)},
	{"ring100-rank", ringRankPlacer{replicas: 100}.place},
	{"rendezvous", place},
	{"consistent-bounded-rf20", ringPlacer{replicas: 20}.place},
	{"consistent-bounded-rf50", ringPlacer{replicas: 50}.place},
	{"consistent-bounded-rf200", ringPlacer{replicas: 200}.place},
	{"consistent-rf200-ringorder", ringPlacer{replicas: 200, unbounded: true}.place},
	{"consistent-rf200-ringorder-byring", ringPlacer{replicas: 200, unbounded: true, byRing: true}.place},
	{"consistent-rf200-spillbyscore", ringPlacer{replicas: 200, unbounded: true, spill: fill}.place},
}

// TestPlacerVariants prints the grid for the other placements
// (CORRAL_PLACER_VARIANTS=1 go test -run 'TestBalanceGrid|TestPlacerVariants'
// -v prints them beside the production one; a comma-separated list of names
// instead of 1 measures only those); it checks no movement bound, only that
// each variant stays within the cap.
func TestPlacerVariants(t *testing.T) {
	if os.Getenv("CORRAL_PLACER_VARIANTS") == "" {
		t.Skip("a minute or two of measurement; set CORRAL_PLACER_VARIANTS=1")
	}
	only := os.Getenv("CORRAL_PLACER_VARIANTS")
	for _, v := range placerVariants {
		if only != "1" && !slices.Contains(strings.Split(only, ","), v.name) {
			continue
		}
		t.Logf("%s:\n%s", v.name, gridTable(t, fresh(v.place), nil))
	}
}

// gridTable measures every point of the grid with step; with a limit it
// checks every change against it, without one only the balance bound.
func gridTable(t *testing.T, step stepper, limit limitFn) string {
	t.Helper()
	var rows []string
	var sumJoin, sumLeave, worstJoin, worstLeave float64
	var within, tight int
	var worstMany [2]float64 // where P/N ≥ 50: join, leave
	for _, p := range gridPartitions {
		for _, n := range gridMembers {
			c := measureCell(t, step, n, p)
			if limit != nil {
				c.check(t, limit)
			} else if limit := int(math.Ceil(maxLoadBound * c.mean())); c.maxLoad > limit {
				t.Errorf("N=%d P=%d: a member owns %d partitions, bound %d", n, p, c.maxLoad, limit)
			}
			if c.within(movedLimit) {
				within++
			}
			if c.within(tightLimit) {
				tight++
			}
			j := float64(c.worstJoin()) / c.joinIdeal
			l := c.worstLeave()
			lr := float64(l.moved) / float64(max(l.held, 1))
			sumJoin += j
			sumLeave += lr
			worstJoin, worstLeave = max(worstJoin, j), max(worstLeave, lr)
			if c.mean() >= manyPerMember {
				worstMany = [2]float64{max(worstMany[0], j), max(worstMany[1], lr)}
			}
			rows = append(rows, c.row())
		}
	}
	cells := float64(len(rows))
	return fmt.Sprintf("| P | N | time per change | max/mean | min/mean | join: moved / ideal | leave: moved / held |\n|---|---|---|---|---|---|---|\n%s\n"+
		"within the test's movement bounds: %d of %d; within ⌈1.25 × ideal⌉ (joins and leaves): %d (rows marked * are not); worst moved/ideal: join %.2f, leave %.2f (where P/N ≥ 50: %.2f, %.2f); mean: join %.2f, leave %.2f",
		strings.Join(rows, "\n"), within, len(rows), tight, worstJoin, worstLeave, worstMany[0], worstMany[1], sumJoin/cells, sumLeave/cells)
}

// TestSameMembersSamePlacement: every worker sees the members in its own
// order, sometimes with an id twice, and must place alike.
func TestSameMembersSamePlacement(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ members, partitions int }{{3, 64}, {16, 1024}, {100, 4096}} {
		members := memberIDs(tc.members)
		want := mustRing(t, tc.partitions, members)
		for range 5 {
			view := append(slices.Clone(members), members[rng.IntN(len(members))])
			rng.Shuffle(len(view), func(i, j int) { view[i], view[j] = view[j], view[i] })
			if moves := Moves(want, mustRing(t, tc.partitions, view)); len(moves) != 0 {
				t.Fatalf("N=%d P=%d: a reordered view places %d partitions differently", tc.members, tc.partitions, len(moves))
			}
		}
	}
}

// TestRingOrderSpill exercises the path the production placement takes only
// when the ring's bound rounds above ⌈Load × P/N⌉: with an unbounded ring
// every overfull owner hands partitions on in the order
// GetClosestNForPartition gives, and the cap must still hold.
func TestRingOrderSpill(t *testing.T) {
	t.Parallel()
	place := ringPlacer{replicas: 20, unbounded: true}.place
	for _, tc := range []struct{ members, partitions int }{{1, 64}, {3, 64}, {7, 64}, {16, 1024}} {
		ids := memberIDs(tc.members)
		r := mustRingWith(t, place, tc.partitions, ids)
		for id, n := range r.Loads() {
			if n > r.MaxLoad() {
				t.Errorf("N=%d P=%d: %s owns %d, bound %d", tc.members, tc.partitions, id, n, r.MaxLoad())
			}
		}
		if moves := Moves(r, mustRingWith(t, place, tc.partitions, slices.Clone(ids))); len(moves) != 0 {
			t.Errorf("N=%d P=%d: the same members placed %d partitions differently", tc.members, tc.partitions, len(moves))
		}
	}
}
