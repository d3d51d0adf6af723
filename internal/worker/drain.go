package worker

import (
	"context"

	"github.com/corralhq/corral/discovery"
)

// Drain hands every partition off as SIGTERM does, but keeps the process
// and its API up: it claims nothing from now on, marks its Consul check
// critical so clients and peers stop counting on it, waits for the
// in-flight batch, releases, and deletes its lease so peers drop it from
// their rings and claim at once. Stop it afterwards; draining is one-way.
func (w *Worker) Drain(ctx context.Context) int {
	n := w.own.drain(ctx, func(ctx context.Context) {
		_, output := w.health.check(ctx)
		if err := w.registry.SetHealth(ctx, discovery.StatusCritical, output); err != nil {
			w.log.Warn("drain: cannot mark the Consul check critical", "err", err)
		}
	})
	w.log.Info("drained", "released", n)
	return n
}
