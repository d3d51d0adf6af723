package worker

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// relayEvery sweeps all owned outboxes, for entries a previous owner left.
const relayEvery = time.Second

// relayEntries is how many outbox entries one relay round moves; an entry
// holds the emits of one commit, up to a batch's worth.
const relayEntries = 64

// A target partition whose enqueue fails is held back, first for
// relayBackoff, doubling per failure up to relayBackoffMax, while the
// relay to the other targets goes on.
const (
	relayBackoff    = 250 * time.Millisecond
	relayBackoffMax = 30 * time.Second
)

// relayStore is what the relay needs of the job store.
type relayStore interface {
	RelayMany(ctx context.Context, sources []store.RelaySource, max int64, partitionOf func(key string) int, held func(target int) bool) (store.RelayRound, error)
	TrimDead(ctx context.Context, partitions []int, now time.Time) (map[int]store.DeadTrim, error)
	SweepFinished(ctx context.Context, partitions []int) (map[int]store.Swept, error)
}

// relay moves emitted jobs from the owned partitions' outboxes to their
// target partitions, and keeps the owned dead-letter stores trimmed and
// the owned finished records swept.
type relay struct {
	cfg     Config
	log     *slog.Logger
	store   relayStore
	grants  interface{ snapshot() map[int]lease.Grant }
	req     chan int       // partitions with fresh outbox entries
	metrics *workerMetrics // nil: not counted
}

func newRelay(cfg Config, log *slog.Logger, st relayStore, g interface{ snapshot() map[int]lease.Grant }) *relay {
	return &relay{cfg: cfg, log: log, store: st, grants: g, req: make(chan int, 1024)}
}

// kick asks the relay to move partition p's fresh outbox entries.
func (rl *relay) kick(p int) {
	select {
	case rl.req <- p:
	default:
	}
}

func (rl *relay) partitionOf(key string) int {
	return rl.cfg.routing().PartitionOf(key)
}

// relayHolds are the target partitions held back after a failure. Only
// the relay loop uses them.
type relayHolds struct {
	until map[int]time.Time
	delay map[int]time.Duration
}

// failed holds target t back after a failure and says for how long.
func (h *relayHolds) failed(t int, now time.Time) time.Duration {
	d := relayBackoff
	if prev, ok := h.delay[t]; ok {
		d = min(2*prev, relayBackoffMax)
	}
	h.delay[t], h.until[t] = d, now.Add(d)
	return d
}

// expire lets go of the holds that are due, and reports whether any was:
// their kept entries are then read again from the outboxes' heads.
func (h *relayHolds) expire(now time.Time) bool {
	due := false
	for t, u := range h.until {
		if !now.Before(u) {
			delete(h.until, t)
			due = true
		}
	}
	return due
}

// run moves emitted jobs from owned partitions' outboxes to their
// target partitions, right after a commit that emitted some and on a sweep.
//
// A target that fails is held back with backoff; the entries with jobs for
// it stay in their outboxes (their other targets are relayed) and the
// reads go on past them from a cursor per outbox, so one bad target does
// not stop the rest. When a hold ends, the outboxes are read from the head
// again, so the kept entries go first and each target gets its jobs in
// outbox order.
func (rl *relay) run(ctx context.Context) {
	t := time.NewTicker(relayEvery)
	defer t.Stop()
	holds := relayHolds{until: map[int]time.Time{}, delay: map[int]time.Duration{}}
	after := map[int]string{} // per outbox, the last entry read while a target is held
	var lastDeadTrim time.Time
	for {
		var parts []int
		select {
		case <-ctx.Done():
			return
		case p := <-rl.req:
			parts = append(parts, p)
			for more := true; more; {
				select {
				case p := <-rl.req:
					parts = append(parts, p)
				default:
					more = false
				}
			}
		case <-t.C:
			for p := range rl.grants.snapshot() {
				parts = append(parts, p)
			}
			// The owner's other upkeep rides on the sweep.
			if time.Since(lastDeadTrim) >= deadTrimEvery {
				lastDeadTrim = time.Now()
				rl.trimDead(ctx)
			}

		}
		if holds.expire(time.Now()) || len(holds.until) == 0 {
			clear(after)
		}
		// The holds are fixed for the whole iteration (a target failing in
		// it joins them), so no target gets a later entry before an earlier
		// one it was held back from.
		held := func(t int) bool { _, ok := holds.until[t]; return ok }
		// Every partition asked for in one relay round; those that had a
		// full round's worth go again.
		for len(parts) > 0 {
			slices.Sort(parts)
			parts = slices.Compact(parts)
			// The round's entries are shared among its partitions, so a
			// round holds a bounded number of jobs in memory.
			each := max(1, relayEntries/len(parts))
			sources := make([]store.RelaySource, len(parts))
			for i, p := range parts {
				sources[i] = store.RelaySource{Partition: p, After: after[p]}
			}
			round, err := rl.store.RelayMany(ctx, sources, int64(each), rl.partitionOf, held)
			if err != nil {
				if ctx.Err() == nil {
					rl.log.Warn("relay failed", "partitions", len(parts), "err", err)
				}
				break
			}
			now := time.Now()
			for target, err := range round.Failed {
				d := holds.failed(target, now)
				rl.log.Warn("relay to a partition failed; its jobs wait in the outboxes and the other partitions go on",
					"target", target, "retry_in", d, "err", err)
			}
			for target := range round.Reached {
				delete(holds.delay, target) // it works again
			}
			parts = parts[:0]
			for p, r := range round.Sources {
				if r.Err != nil {
					rl.log.Error("outbox entry cannot be relayed; it stays", "partition", p, "err", r.Err)
				}
				if r.Last != "" && (r.Kept > 0 || after[p] != "") {
					after[p] = r.Last
				}
				if r.Read >= each {
					parts = append(parts, p)
				}
			}
		}
	}
}
