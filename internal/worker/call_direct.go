package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/store"
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
func (rt *callRouter) callDirect(ctx context.Context, in *workerpb.Job, p int) (resp *workerpb.CallResponse, ok bool, err error) {
	now := time.Now()
	grant, owned := rt.grants.activeGrant(p)
	hs := rt.intake.handlers()
	if !owned || in.NotBeforeMs > now.UnixMilli() || rt.intake.validate(in, in.Id, hs) != nil {
		return nil, false, nil // the queue path schedules it, or says what is wrong
	}
	if pp := rt.cfg.routing().Load().Parent(in.Key, p, now.UnixMilli()); pp >= 0 {
		// Its key moved here by a reshard: the same call may have committed
		// in the old partition, and the queue path then says so.
		if has, err := rt.store.HasRecord(ctx, pp, in.Id); has || err != nil {
			return nil, false, nil
		}
	}
	j := store.Job{ID: in.Id, Handler: in.Handler, Key: in.Key, Payload: in.Payload, Attempt: 1,
		SubmittedAt: now.UnixMilli(), MaxAttempts: int(in.MaxAttempts), TimeoutMs: in.TimeoutMs, Partition: p}
	mu := &rt.direct.mu[p%len(rt.direct.mu)]
	mu.Lock()
	defer mu.Unlock()
	entity := entityOf(hs)(j.Handler)
	ref := store.EntityRef{Type: entity, Key: j.Key}
	// A cached state saves a read; the commit's guard then also does the
	// look ViewForCall would have done.
	var guard *store.Guard
	if state, has, cached := rt.direct.states.get(ref, grant); cached {
		guard = store.NewGuard(j, entity, state, has)
	} else {
		var verr error
		if guard, verr = rt.store.ViewForCall(ctx, j, entity); guard == nil {
			if verr != nil {
				rt.log.Debug("direct call: cannot read the key's view; taking the queue", "job", j.ID, "err", verr)
			}
			return nil, false, nil
		}
	}
	// The guard makes the id unused in this partition; the reservation
	// makes sure no other partition has it.
	if err := rt.store.ReserveID(ctx, j); err != nil {
		return nil, false, nil // the queue path says what is wrong
	}
	done, cancel := rt.calls.wait(j.ID)
	defer cancel()
	b, err := rt.exec.runCall(ctx, p, grant, j, guard, now)
	if errors.Is(err, errNotRun) {
		return nil, false, nil
	}
	if err != nil {
		rt.direct.states.forget(ref)
		if !errors.Is(err, store.ErrBusy) && !errors.Is(err, store.ErrSplitting) && !isFenced(err) {
			rt.log.Warn("direct call: commit failed; taking the queue", "job", j.ID, "partition", p, "err", err)
		}
		return nil, false, nil
	}
	if len(b.States) > 0 {
		rt.direct.states.put(ref, grant, b.States[0].Value, true)
	} else {
		rt.direct.states.put(ref, grant, guard.State, guard.HasState)
	}
	if slices.Contains(b.Done, j.ID) || len(b.Dead) > 0 || len(b.Rejected) > 0 {
		r := <-done // the commit has just sent it
		return &workerpb.CallResponse{Id: j.ID, Result: r, ServedBy: rt.cfg.ID}, true, nil
	}
	// Parked for a retry: the executor runs it when due.
	resp, err = rt.await(ctx, in, false, done)
	return resp, true, err
}
