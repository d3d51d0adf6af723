package worker

import (
	"context"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/ui"
)

// uiSource is what the dashboard reads, through the reporter, the store
// and the API: the same answers as the Status, Locate, ListDeadLetters,
// ListJobs and GetJobs RPCs, and the dead-letter replay and purge.
type uiSource struct {
	r    *reporter
	dead interface {
		ListDead(ctx context.Context, limit int, after string) ([]store.DeadRecord, string, error)
	}
	api *API
}

// emittedProbe is how many of a job's emitted ids the job page looks up.
const emittedProbe = 16

func (s uiSource) Status(ctx context.Context) (*workerpb.StatusResponse, error) {
	return s.r.clusterStatus(ctx)
}

// Holders is Locate for every partition at once.
func (s uiSource) Holders(ctx context.Context) ([]ui.Holder, error) {
	parts := make([]int, s.r.cfg.routing().Partitions())
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

func deadLetterOf(d *workerpb.DeadLetter) ui.DeadLetter {
	return ui.DeadLetter{ID: d.Id, Handler: d.Handler, Key: d.Key, Partition: int(d.Partition), Attempts: int(d.Attempts),
		Errors: d.Errors, DeadAtMs: d.DeadAtMs, PayloadBytes: len(d.Payload)}
}

func (s uiSource) DeadLetter(ctx context.Context, id string) (*ui.DeadLetter, error) {
	resp, err := s.api.ListDeadLetters(ctx, &workerpb.ListDeadLettersRequest{Ids: []string{id}})
	if err != nil || len(resp.Dead) == 0 {
		return nil, err
	}
	d := deadLetterOf(resp.Dead[0])
	return &d, nil
}

func (s uiSource) ReplayDead(ctx context.Context, ids []string) (int, error) {
	n, err := s.api.ReplayDeadLetters(ctx, &workerpb.DeadLetterIDs{Ids: ids})
	return int(n.GetCount()), err
}

func (s uiSource) PurgeDead(ctx context.Context, ids []string) (int, error) {
	n, err := s.api.PurgeDeadLetters(ctx, &workerpb.DeadLetterIDs{Ids: ids})
	return int(n.GetCount()), err
}

func (s uiSource) ListJobs(ctx context.Context, req *workerpb.ListJobsRequest) (*workerpb.ListJobsResponse, error) {
	return s.api.ListJobs(ctx, req)
}

func (s uiSource) GetJobs(ctx context.Context, ids []string) ([]*workerpb.JobInfo, error) {
	resp, err := s.api.GetJobs(ctx, &workerpb.GetJobsRequest{Ids: ids})
	return resp.GetJobs(), err
}

// Emitted looks up the first emittedProbe ids a job's emits would have
// (emitted ids are derived from the parent's) and keeps the known ones,
// up to the first unknown.
func (s uiSource) Emitted(ctx context.Context, id string) ([]*workerpb.JobInfo, error) {
	ids := make([]string, emittedProbe)
	for n := range ids {
		ids[n] = store.EmittedID(id, n)
	}
	js, err := s.GetJobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []*workerpb.JobInfo
	for _, j := range js {
		if j.State == workerpb.JobResult_UNKNOWN || j.State == workerpb.JobResult_STATE_UNSPECIFIED {
			break
		}
		out = append(out, j)
	}
	return out, nil
}
