package worker

import (
	"context"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/ui"
)

// uiSource is what the dashboard reads, through the reporter and the
// store: the same answers as the Status, Locate and ListDeadLetters RPCs.
type uiSource struct {
	r    *reporter
	dead interface {
		ListDead(ctx context.Context, limit int, after string) ([]store.DeadRecord, string, error)
	}
}

func (s uiSource) Status(ctx context.Context) (*workerpb.StatusResponse, error) {
	return s.r.clusterStatus(ctx)
}

// Holders is Locate for every partition at once.
func (s uiSource) Holders(ctx context.Context) ([]ui.Holder, error) {
	parts := make([]int, s.r.cfg.Ring.Partitions)
	for p := range parts {
		parts[p] = p
	}
	held, err := s.r.holders.HoldersOf(ctx, parts)
	if err != nil {
		return nil, err
	}
	ring := s.r.view.current()
	out := make([]ui.Holder, len(parts))
	for p := range out {
		h := held[p]
		out[p] = ui.Holder{Owner: lease.WorkerID(h.Token), Epoch: h.Epoch}
		if ring != nil {
			out[p].RingOwner = ring.OwnerOf(p)
		}
	}
	return out, nil
}

func (s uiSource) DeadLetters(ctx context.Context, limit int, after string) ([]ui.DeadLetter, string, error) {
	recs, next, err := s.dead.ListDead(ctx, limit, after)
	if err != nil {
		return nil, "", err
	}
	out := make([]ui.DeadLetter, len(recs))
	for i, d := range recs {
		out[i] = ui.DeadLetter{ID: d.ID, Handler: d.Handler, Key: d.Key, Partition: d.Partition, Attempts: d.Attempts,
			Errors: d.Errors, DeadAtMs: d.DeadAtMs, PayloadBytes: len(d.Payload)}
	}
	return out, next, nil
}
