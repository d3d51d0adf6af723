package worker

import (
	"context"
	"time"
)

// relayEvery sweeps all owned outboxes, for entries a previous owner left.
const relayEvery = time.Second

// relayEntries is how many outbox entries one relay call moves; an entry
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
		seen := map[int]bool{}
		for _, p := range parts {
			if seen[p] {
				continue
			}
			seen[p] = true
			for {
				n, err := w.store.Relay(ctx, p, relayEntries, w.partitionOf)
				if err != nil {
					if ctx.Err() == nil {
						w.log.Warn("relay failed", "partition", p, "err", err)
					}
					break
				}
				if n < relayEntries {
					break
				}
			}
		}
	}
}
