package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
)

// callDirect runs a Call on this owner without passing it through the
// queue, when that cannot reorder it: no job of its key is queued, parked
// or waiting, no delayed job of its partition is due, and its id is new
// in the cluster. It reads the key's state, runs the handler and commits
// under the partition's grant with a guard that refuses the commit if
// any of that changed meanwhile (a job of the key was submitted, another
// call committed). ok is false when the call must take the queue instead;
// nothing was written then.
//
// A job that asks for a retry is parked as queued jobs are, and the call
// waits for it like one that went through the queue.
func (a *API) callDirect(ctx context.Context, in *workerpb.Job, p int) (resp *workerpb.CallResponse, err error, ok bool) {
	w := a.w
	now := time.Now()
	grant, owned := w.grantOf(p)
	if !owned || in.NotBeforeMs > now.UnixMilli() || w.validate(in, in.Id, w.handlers.Handlers()) != nil {
		return nil, nil, false // the queue path schedules it, or says what is wrong
	}
	j := store.Job{ID: in.Id, Handler: in.Handler, Key: in.Key, Payload: in.Payload, Attempt: 1,
		SubmittedAt: now.UnixMilli(), MaxAttempts: int(in.MaxAttempts), TimeoutMs: in.TimeoutMs, Partition: p}
	mu := &w.direct[p%len(w.direct)]
	mu.Lock()
	defer mu.Unlock()
	entity := plugins.EntityType(j.Handler)
	ref := store.EntityRef{Type: entity, Key: j.Key}
	// A cached state saves a read; the commit's guard then also does the
	// look ViewForCall would have done.
	var guard *store.Guard
	if state, has, cached := w.states.get(ref, grant); cached {
		guard = store.NewGuard(j, entity, state, has)
	} else if guard, _ = w.store.ViewForCall(ctx, j, entity); guard == nil {
		return nil, nil, false
	}
	// The guard makes the id unused in this partition; the reservation
	// makes sure no other partition has it.
	if err := w.store.ReserveID(ctx, j); err != nil {
		return nil, nil, false // the queue path says what is wrong
	}
	done, cancel := w.calls.wait(j.ID)
	defer cancel()
	snap := store.Snapshot{States: map[store.EntityRef][]byte{ref: guard.State}}
	wk := &work{keys: []*keyWork{{key: j.Key, run: []store.Job{j}}}}
	outcomes, progress, _ := w.runIsolated(ctx, []store.Job{j}, snap, false)
	if !progress {
		return nil, nil, false // the plugin is down: the queue keeps the job
	}
	b, berr := buildBatch(wk, outcomes, w.retryPolicy(now))
	if berr != nil {
		return nil, nil, false
	}
	b.Unparked = nil // never parked: there is no parked entry to drop
	b.Guard = guard
	if !w.keeper.Valid() {
		return nil, nil, false
	}
	if err := w.commitObserved(ctx, p, grant, b); err != nil {
		w.states.forget(ref)
		if isFenced(err) {
			w.fenced.Add(1)
			w.drop(p, grant)
		}
		if !errors.Is(err, store.ErrBusy) && !isFenced(err) {
			w.log.Warn("direct call: commit failed; taking the queue", "job", j.ID, "partition", p, "err", err)
		}
		return nil, nil, false
	}
	if len(b.States) > 0 {
		w.states.put(ref, grant, b.States[0].Value, true)
	} else {
		w.states.put(ref, grant, guard.State, guard.HasState)
	}
	w.committedBatch(p, []store.Job{j}, b)
	if slices.Contains(b.Done, j.ID) || len(b.Dead) > 0 {
		r := <-done // committedBatch has just sent it
		return &workerpb.CallResponse{Id: j.ID, Result: r, ServedBy: w.cfg.ID}, nil, true
	}
	// Parked for a retry: the executor runs it when due.
	resp, err = a.await(ctx, in, false, done)
	return resp, err, true
}

// grantOf is the grant this worker holds partition p under, if it owns it.
func (w *Worker) grantOf(p int) (lease.Grant, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.owned[p]
	return e, ok
}
