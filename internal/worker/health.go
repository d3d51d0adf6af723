package worker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/discovery"
)

// healthLoop drives the Consul TTL check from the work itself: it passes
// only while the lease is trusted and the executor loop keeps turning, and
// its output says what a person looking at the Consul UI needs.
func (w *Worker) healthLoop(ctx context.Context) {
	every := w.cfg.CheckTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		status, output := w.health()
		cctx, cancel := context.WithTimeout(ctx, every)
		if err := w.registry.SetHealth(cctx, status, output); err != nil && ctx.Err() == nil {
			w.log.Warn("cannot update Consul check", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) health() (discovery.Status, string) {
	owned := len(w.ownedSnapshot())
	stall := time.Since(time.Unix(0, w.lastLoop.Load()))
	lease := "lease ok (" + w.keeper.Remaining().Round(time.Millisecond).String() + " left)"
	status := discovery.StatusPassing
	var problems []string
	if !w.keeper.Valid() {
		status, lease = discovery.StatusCritical, "lease NOT held (Redis unreachable?)"
	}
	if stall > w.cfg.CheckTTL {
		status = discovery.StatusCritical
		problems = append(problems, fmt.Sprintf("job loop stalled for %v", stall.Round(time.Millisecond)))
	}
	plugins := strings.Join(w.handlers.Plugins(), ",")
	out := fmt.Sprintf("%s; owns %d partitions; committed %d, fenced %d; plugins %s",
		lease, owned, w.committed.Load(), w.fenced.Load(), plugins)
	if len(problems) > 0 {
		out = strings.Join(problems, "; ") + "; " + out
	}
	return status, out
}
