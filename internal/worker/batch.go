package worker

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// EntityOf is the entity type a handler works on: "donor.donate" → "donor".
func EntityOf(handler string) string {
	if i := strings.IndexByte(handler, '.'); i > 0 {
		return handler[:i]
	}
	return handler
}

// buildRequest turns the jobs of one partition batch that are not finished
// yet into a plugin request, with the state of every entity they touch.
func buildRequest(jobs []store.Job, snap store.Snapshot) *pluginpb.HandleRequest {
	req := &pluginpb.HandleRequest{}
	seen := map[store.EntityRef]bool{}
	for _, j := range jobs {
		if snap.Finished[j.ID] {
			continue
		}
		ref := store.EntityRef{Type: EntityOf(j.Handler), Key: j.Key}
		if !seen[ref] {
			seen[ref] = true
			req.Entities = append(req.Entities, &pluginpb.Entity{Type: ref.Type, Key: ref.Key, State: snap.States[ref]})
		}
		req.Jobs = append(req.Jobs, &pluginpb.Job{Id: j.ID, Handler: j.Handler, Key: j.Key, Payload: j.Payload,
			Attempt: int32(j.Attempt), SubmittedAtMs: j.SubmittedAt})
	}
	return req
}

// retryAll is the outcome of a batch whose plugin call kept failing: every
// job counts one attempt.
func retryAll(req *pluginpb.HandleRequest, err error) *pluginpb.HandleResponse {
	resp := &pluginpb.HandleResponse{Outcomes: make([]*pluginpb.Outcome, len(req.Jobs))}
	for i, j := range req.Jobs {
		resp.Outcomes[i] = &pluginpb.Outcome{JobId: j.Id, Status: pluginpb.Outcome_RETRY, Error: err.Error()}
	}
	return resp
}

// buildBatch turns plugin outcomes into one fenced commit. Every job read is
// acked from the queue; each ends applied, re-queued for another attempt, or
// dead-lettered. Emitted jobs get ids derived from their parent's, so a
// re-run of the same parent emits the same ids.
func buildBatch(jobs []store.Job, snap store.Snapshot, resp *pluginpb.HandleResponse, maxAttempts func(handler string) int) (*store.Batch, error) {
	outcomes := make(map[string]*pluginpb.Outcome, len(resp.Outcomes))
	for _, o := range resp.Outcomes {
		outcomes[o.JobId] = o
	}
	b := &store.Batch{}
	stateAt := map[store.EntityRef]int{}
	for _, j := range jobs {
		b.Acked = append(b.Acked, j.StreamID)
		if snap.Finished[j.ID] {
			continue
		}
		o, ok := outcomes[j.ID]
		if !ok {
			return nil, fmt.Errorf("no outcome for job %q", j.ID)
		}
		switch o.Status {
		case pluginpb.Outcome_OK:
			b.Done = append(b.Done, j.ID)
			if o.StateChanged {
				ref := store.EntityRef{Type: EntityOf(j.Handler), Key: j.Key}
				if i, ok := stateAt[ref]; ok {
					b.States[i].Value = o.State
				} else {
					stateAt[ref] = len(b.States)
					b.States = append(b.States, store.StateWrite{Entity: ref, Value: o.State})
				}
			}
			if len(o.Result) > 0 {
				b.Results = append(b.Results, store.Result{JobID: j.ID, Value: o.Result})
			}
			for n, e := range o.Emits {
				b.Emits = append(b.Emits, store.Job{ID: j.ID + "/" + strconv.Itoa(n), Handler: e.Handler, Key: e.Key, Payload: e.Payload})
			}
		case pluginpb.Outcome_RETRY:
			if j.Attempt >= maxAttempts(j.Handler) {
				b.Dead = append(b.Dead, store.DeadJob{Job: j, Error: fmt.Sprintf("gave up after %d attempts: %s", j.Attempt, o.Error)})
				continue
			}
			r := j
			r.Attempt++
			b.Retries = append(b.Retries, r)
		default:
			b.Dead = append(b.Dead, store.DeadJob{Job: j, Error: o.Error})
		}
	}
	return b, nil
}
