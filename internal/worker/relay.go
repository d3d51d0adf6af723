package worker

import (
	"context"
	"time"
)

// relayEvery sweeps all owned outboxes, for entries a previous owner left.
const relayEvery = time.Second

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
				n, err := w.store.Relay(ctx, p, 1024, w.partitionOf)
				if err != nil {
					if ctx.Err() == nil {
						w.log.Warn("relay failed", "partition", p, "err", err)
					}
					break
				}
				if n < 1024 {
					break
				}
			}
		}
	}
}
