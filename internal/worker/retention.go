package worker

import (
	"context"
	"maps"
	"slices"
	"time"
)

// deadTrimEvery is how often the owner applies the dead-letter retention
// and cap to its partitions. Between two sweeps a partition can hold more
// than the cap by the dead letters of one interval.
const deadTrimEvery = time.Minute

// finishedSweepEvery is how often the owner drops the finished records of
// its partitions that are past the done retention (see store's sweep): a
// record outlives the retention by up to this much, and by the time a
// large backlog takes to sweep.
const finishedSweepEvery = 5 * time.Second

// trimDead drops the dead letters of the owned partitions that are past
// --dead-retention or --dead-max, oldest first, and logs and counts them.
//
// It is a sweep by the owner rather than a step of the commit script: the
// retention drops letters whether or not new ones arrive, the commit stays
// as short as it is, and what was dropped is counted here.
func (rl *relay) trimDead(ctx context.Context) {
	parts := slices.Sorted(maps.Keys(rl.grants.snapshot()))
	if len(parts) == 0 {
		return
	}
	got, err := rl.store.TrimDead(ctx, parts, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			rl.log.Warn("dead-letter trim failed; it runs again on the next sweep", "err", err)
		}
		return
	}
	for p, t := range got {
		if t.Expired+t.Capped == 0 {
			continue
		}
		rl.log.Info("dropped dead letters", "partition", p, "past_retention", t.Expired, "past_cap", t.Capped,
			"retention", rl.cfg.Store.DeadRetention, "cap", rl.cfg.Store.DeadMax)
		if rl.metrics != nil {
			rl.metrics.m.DeadDropped("age", t.Expired)
			rl.metrics.m.DeadDropped("cap", t.Capped)
		}
	}
}

// sweepLoop sweeps the owned partitions' finished records (sweepFinished)
// at once and then every finishedSweepEvery, in a loop of its own: a
// large sweep does not hold up the relay.
func (rl *relay) sweepLoop(ctx context.Context) {
	t := time.NewTicker(finishedSweepEvery)
	defer t.Stop()
	for {
		rl.sweepFinished(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepFinished drops the records of the owned partitions' jobs that
// finished more than the done retention ago, which have no time to live of
// their own (see store.SweepFinished). A sweep that fails is logged and
// runs again on the next one: nothing is lost, records are only kept a
// little longer.
func (rl *relay) sweepFinished(ctx context.Context) {
	parts := slices.Sorted(maps.Keys(rl.grants.snapshot()))
	if len(parts) == 0 {
		return
	}
	got, err := rl.store.SweepFinished(ctx, parts)
	if err != nil {
		if ctx.Err() == nil {
			rl.log.Warn("finished-record sweep failed; it runs again on the next sweep", "err", err)
		}
		return
	}
	records := 0
	for _, sw := range got {
		records += sw.Records
	}
	if records > 0 {
		rl.log.Debug("dropped finished records past the done retention", "records", records, "partitions", len(got),
			"retention", rl.cfg.Store.DoneRetention)
	}
}
