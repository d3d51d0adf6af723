package schedule

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func mustParse(t *testing.T, expr string) Spec {
	t.Helper()
	s, err := Parse(expr, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// secs is the ticks as seconds after t0.
func secs(ts []time.Time) []int {
	out := make([]int, len(ts))
	for i, t := range ts {
		out[i] = int(t.Sub(t0) / time.Second)
	}
	return out
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPlanOnTime(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "@every 1s")
	for _, mode := range []CatchUp{CatchUpNone, CatchUpOne, CatchUpAll} {
		// Nothing due yet.
		p := PlanTicks(s, sec(0), sec(0).Add(900*time.Millisecond), mode)
		if len(p.Fire) != 0 || p.Missed != 0 || !p.Through.Equal(sec(0)) || !p.Done || !p.Next.Equal(sec(1)) {
			t.Errorf("%v, nothing due: %+v", mode, p)
		}
		// The scheduler woke a little late: the tick is on time.
		p = PlanTicks(s, sec(0), sec(1).Add(30*time.Millisecond), mode)
		if !sameInts(secs(p.Fire), []int{1}) || p.Missed != 0 || !p.Through.Equal(sec(1)) || !p.Next.Equal(sec(2)) {
			t.Errorf("%v, one tick due: %+v", mode, p)
		}
		// A failover took three seconds: late, not missed.
		p = PlanTicks(s, sec(0), sec(3).Add(500*time.Millisecond), mode)
		if !sameInts(secs(p.Fire), []int{1, 2, 3}) || p.Missed != 0 {
			t.Errorf("%v, a failover: fire %v, missed %d", mode, secs(p.Fire), p.Missed)
		}
	}
}

// An outage of 20 s on a per-second schedule: ticks 1..14 are more than
// MissAfter late at 19.5 s, ticks 15..19 are not.
func TestPlanCatchUpModes(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "@every 1s")
	now := sec(19).Add(500 * time.Millisecond)
	for _, c := range []struct {
		mode   CatchUp
		fire   []int
		missed int
	}{
		{CatchUpNone, []int{15, 16, 17, 18, 19}, 14},
		{CatchUpOne, []int{14, 15, 16, 17, 18, 19}, 13},
		{CatchUpAll, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 0},
	} {
		p := PlanTicks(s, sec(0), now, c.mode)
		if !sameInts(secs(p.Fire), c.fire) || p.Missed != c.missed || !p.Through.Equal(sec(19)) || !p.Done || !p.Next.Equal(sec(20)) {
			t.Errorf("%v: fire %v missed %d through %v next %v, want fire %v missed %d", c.mode, secs(p.Fire), p.Missed,
				p.Through.Sub(t0), p.Next.Sub(t0), c.fire, c.missed)
		}
	}
}

// A daily report whose cluster was down at midnight: none waits for the
// next midnight, one fires last midnight's once, all fires both missed.
func TestPlanDailyAfterAnOutage(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "@daily")
	last := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now := time.Date(2026, 3, 3, 0, 30, 0, 0, time.UTC) // ticks of 2 and 3 March missed
	none := PlanTicks(s, last, now, CatchUpNone)
	one := PlanTicks(s, last, now, CatchUpOne)
	all := PlanTicks(s, last, now, CatchUpAll)
	mar := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	if len(none.Fire) != 0 || none.Missed != 2 || !none.Through.Equal(mar(3)) || !none.Next.Equal(mar(4)) {
		t.Errorf("none: %+v", none)
	}
	if len(one.Fire) != 1 || !one.Fire[0].Equal(mar(3)) || one.Missed != 1 {
		t.Errorf("one: %+v", one)
	}
	if len(all.Fire) != 2 || !all.Fire[0].Equal(mar(2)) || !all.Fire[1].Equal(mar(3)) || all.Missed != 0 {
		t.Errorf("all: %+v", all)
	}
}

// Catch-up all fires the latest MaxCatchUp missed ticks only.
func TestPlanCatchUpAllIsBounded(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "@every 1s")
	now := sec(3000)
	p := PlanTicks(s, sec(0), now, CatchUpAll)
	// Ticks 2996..3000 are on time; 1..2995 missed, of which the latest
	// 1000 (1996..2995) fire.
	if len(p.Fire) != MaxCatchUp+5 || p.Missed != 2995-MaxCatchUp || !p.Fire[0].Equal(sec(1996)) || !p.Fire[len(p.Fire)-1].Equal(sec(3000)) {
		t.Fatalf("fire %d from %v to %v, missed %d", len(p.Fire), p.Fire[0].Sub(t0), p.Fire[len(p.Fire)-1].Sub(t0), p.Missed)
	}
	for i := 1; i < len(p.Fire); i++ {
		if !p.Fire[i].Equal(p.Fire[i-1].Add(time.Second)) {
			t.Fatalf("ticks not in order at %d: %v then %v", i, p.Fire[i-1], p.Fire[i])
		}
	}
}

// More ticks due than one plan looks at: plans skip in rounds, and the
// last round fires what the mode says, with the exact count missed.
func TestPlanInRounds(t *testing.T) {
	old := maxScan
	maxScan = 2500
	t.Cleanup(func() { maxScan = old })
	s := mustParse(t, "@every 1s")
	now := sec(10_000)
	for _, mode := range []CatchUp{CatchUpNone, CatchUpOne, CatchUpAll} {
		after, missed, rounds := sec(0), 0, 0
		var p Plan
		for {
			rounds++
			p = PlanTicks(s, after, now, mode)
			missed += p.Missed
			if !p.Through.After(after) && !p.Done {
				t.Fatalf("%v: round %d made no progress", mode, rounds)
			}
			after = p.Through
			if p.Done {
				break
			}
			if len(p.Fire) != 0 {
				t.Fatalf("%v: a round that is not done fires %d ticks", mode, len(p.Fire))
			}
		}
		if rounds < 4 {
			t.Errorf("%v: %d rounds for 10000 ticks, 2500 a round", mode, rounds)
		}
		if got := missed + len(p.Fire); got != 10_000 {
			t.Errorf("%v: %d ticks missed or fired, want 10000", mode, got)
		}
		if last := p.Fire[len(p.Fire)-1]; !last.Equal(now) || !p.Through.Equal(now) {
			t.Errorf("%v: last fired %v, through %v", mode, last.Sub(t0), p.Through.Sub(t0))
		}
		want := map[CatchUp]int{CatchUpNone: 5, CatchUpOne: 6, CatchUpAll: MaxCatchUp + 5}[mode]
		if len(p.Fire) != want {
			t.Errorf("%v: fires %d, want %d", mode, len(p.Fire), want)
		}
	}
}

// Ticks of a schedule in a zone with daylight saving: 02:30 does not
// exist on the night clocks go forward, and is not fired twice when they
// go back.
func TestPlanAcrossDaylightSaving(t *testing.T) {
	t.Parallel()
	s, err := Parse("30 2 * * *", "Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	// 2026: clocks go forward on 29 March, back on 25 October.
	from := time.Date(2026, 3, 27, 12, 0, 0, 0, paris)
	p := PlanTicks(s, from, time.Date(2026, 3, 31, 12, 0, 0, 0, paris), CatchUpAll)
	var days []int
	for _, f := range p.Fire {
		days = append(days, f.In(paris).Day())
	}
	if !sameInts(days, []int{28, 30, 31}) {
		t.Errorf("spring: ticks on %v, want 28, 30 and 31 March (02:30 does not exist on the 29th)", days)
	}
	from = time.Date(2026, 10, 24, 12, 0, 0, 0, paris)
	p = PlanTicks(s, from, time.Date(2026, 10, 26, 12, 0, 0, 0, paris), CatchUpAll)
	if len(p.Fire) != 2 {
		t.Errorf("autumn: %d ticks over two nights: %v", len(p.Fire), p.Fire)
	}
}
