package worker

import (
	"context"
	"slices"
	"time"
)

// relayEvery sweeps all owned outboxes, for entries a previous owner left.
const relayEvery = time.Second

// relayEntries is how many outbox entries one relay round moves; an entry
// holds the emits of one commit, up to a batch's worth.
const relayEntries = 64

// relayLoop moves emitted jobs from owned partitions' outboxes to their
// target partitions, right after a commit that emitted some and on a sweep.
func (w *Worker) relayLoop(ctx context.Context) {
	t := time.NewTicker(relayEvery)
	defer t.Stop()
	for {
		var parts []int
		select {
		case <-ctx.Done():
			return
		case p := <-w.relayReq:
			parts = append(parts, p)
			for more := true; more; {
				select {
				case p := <-w.relayReq:
					parts = append(parts, p)
				default:
					more = false
				}
			}
		case <-t.C:
			for p := range w.ownedSnapshot() {
				parts = append(parts, p)
			}
		}
		// Every partition asked for in one relay round; those that had a
		// full round's worth go again.
		for len(parts) > 0 {
			slices.Sort(parts)
			parts = slices.Compact(parts)
			// The round's entries are shared among its partitions, so a
			// round holds a bounded number of jobs in memory.
			each := max(1, relayEntries/len(parts))
			moved, err := w.store.RelayMany(ctx, parts, int64(each), w.partitionOf)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("relay failed", "partitions", len(parts), "err", err)
				}
				break
			}
			parts = parts[:0]
			for p, n := range moved {
				if n >= each {
					parts = append(parts, p)
				}
			}
		}
	}
}
