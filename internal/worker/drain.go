package worker

import (
	"context"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
)

// Drain hands every partition off as SIGTERM does, but keeps the process
// and its API up: it claims nothing from now on, marks its Consul check
// critical so clients and peers stop counting on it, waits for the
// in-flight batch, releases, and deletes its lease so peers drop it from
// their rings and claim at once. Stop it afterwards; draining is one-way.
func (w *Worker) Drain(ctx context.Context) int {
	w.own.draining.Store(true)
	w.own.reconcileMu.Lock()
	defer w.own.reconcileMu.Unlock()
	_, output := w.health(ctx)
	if err := w.registry.SetHealth(ctx, discovery.StatusCritical, output); err != nil {
		w.log.Warn("drain: cannot mark the Consul check critical", "err", err)
	}
	n := w.releaseAll(ctx)
	// No claims can follow: draining is set and the lease goes now.
	w.keeper.Stop()
	if _, output := w.health(ctx); w.registry.SetHealth(ctx, discovery.StatusCritical, output) != nil {
		w.log.Warn("drain: cannot update the Consul check")
	}
	w.log.Info("drained", "released", n)
	return n
}

// Drain serves the Drain RPC.
func (a *API) Drain(ctx context.Context, _ *workerpb.DrainRequest) (*workerpb.DrainResponse, error) {
	return &workerpb.DrainResponse{Released: int32(a.w.Drain(ctx))}, nil
}
