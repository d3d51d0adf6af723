package schedule

import "time"

// MissAfter is how late a tick may be fired and still be on time. A tick
// later than that was missed: no worker could fire it (the schedule's
// partition had no owner, or Redis was out), and the schedule's catch-up
// decides. It is longer than a failover after a crash (a lease TTL and a
// claim), so a failover alone misses nothing.
const MissAfter = 5 * time.Second

// MaxCatchUp bounds catch-up "all": of the ticks missed, the latest
// MaxCatchUp are fired and the older ones skipped (and counted missed).
const MaxCatchUp = 1000

// maxScan bounds the ticks one Plan looks at, so a schedule that missed
// millions of ticks (a per-second schedule down for a month) is planned in
// rounds, each of them quick.
var maxScan = 100_000

// Plan is what to do with a schedule's ticks due at a moment.
type Plan struct {
	Fire   []time.Time // ticks to fire now, oldest first
	Missed int         // ticks skipped, never to be fired
	// Through is the latest tick handled (fired or skipped): the schedule
	// goes on from there. Equal to after when nothing was due.
	Through time.Time
	// Done is false when more ticks are due than one plan looks at: carry
	// out this one (it only skips ticks) and plan again from Through.
	Done bool
	// Next is the first tick after Through; zero when not Done or never.
	Next time.Time
}

// PlanTicks decides what to do at now with the ticks of s after after (the
// last tick handled, or when the schedule was added or resumed): those
// less than MissAfter late are fired; the missed ones as mode says.
func PlanTicks(s Spec, after, now time.Time, mode CatchUp) Plan {
	cutoff := now.Add(-MissAfter) // a tick at or before it was missed
	p := Plan{Through: after}
	// The latest MaxCatchUp missed ticks, in a ring; older ones are
	// skipped as they fall out of it.
	ring := make([]time.Time, 0, 16)
	head := 0
	var onTime []time.Time
	t := after
	for scanned := 0; ; scanned++ {
		n := s.Next(t)
		if n.IsZero() || n.After(now) {
			break
		}
		if scanned == maxScan {
			// Too many to look at in one go: skip what fell out of the ring
			// and leave the rest to the next plan.
			return Plan{Missed: p.Missed, Through: p.Through}
		}
		t = n
		if n.After(cutoff) {
			onTime = append(onTime, n)
			continue
		}
		if len(ring) < MaxCatchUp {
			ring = append(ring, n)
			continue
		}
		p.Missed++
		p.Through = ring[head]
		ring[head] = n
		head = (head + 1) % MaxCatchUp
	}
	missed := append(ring[head:len(ring):len(ring)], ring[:head]...) // oldest first
	switch {
	case len(missed) == 0:
	case mode == CatchUpAll:
		p.Fire = append(p.Fire, missed...)
	case mode == CatchUpOne:
		p.Fire = append(p.Fire, missed[len(missed)-1])
		p.Missed += len(missed) - 1
	default:
		p.Missed += len(missed)
	}
	p.Fire = append(p.Fire, onTime...)
	switch {
	case len(onTime) > 0:
		p.Through = onTime[len(onTime)-1]
	case len(missed) > 0:
		p.Through = missed[len(missed)-1]
	}
	p.Done = true
	p.Next = s.Next(p.Through)
	return p
}
