package worker

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// keyWork is one key's part of a partition batch. Per-key order is kept by
// holds: while a job of the key waits for a retry, the key is held and its
// later jobs wait behind that job, in order.
type keyWork struct {
	key      string
	held     bool        // held when the batch was loaded
	headRan  bool        // the key's parked job is run[0]
	trim     int         // jobs of run read from the key's waiting list
	run      []store.Job // jobs to run now, in order
	deferred []store.Job // stream jobs that must wait at the back of the list
}

// work is a partition batch: per key, what runs and what waits.
type work struct {
	keys  []*keyWork
	acked []string // every stream entry read; each ends run, finished or waiting
	// dropped are parked or waiting jobs whose id was finished before or
	// is already in the batch: they do not run, and their parked entry and
	// body go.
	dropped []string
	// waiting are the jobs buildBatch parked to wait for a worker that
	// serves their handler, for the log.
	waiting []store.Job
	// flowUntil are the jobs flow control held back (outcome waitFlow):
	// id → when to look at them again (unix ms).
	flowUntil map[string]int64
}

// planWork orders a partition batch: the due parked jobs of held keys with
// the jobs waiting behind them, then the stream's jobs. A stream job of a
// held key whose line is not fully in this batch waits at its back. A job
// whose id is finished, or already in the batch (the same job delivered
// twice), does not run again: a repeated id is a duplicate, never a
// reason to refuse the batch.
func planWork(runs []store.KeyRun, stream []store.Job, snap store.Snapshot) *work {
	n := len(stream)
	for _, r := range runs {
		n += len(r.Jobs)
	}
	wk := &work{acked: make([]string, 0, len(stream))}
	seen := make(map[string]bool, n)
	dup := func(id string) bool {
		if seen[id] || snap.Finished[id] {
			return true
		}
		seen[id] = true
		return false
	}
	byKey := make(map[string]*keyWork, n)
	get := func(key string) *keyWork {
		kw := byKey[key]
		if kw == nil {
			kw = &keyWork{key: key}
			byKey[key] = kw
			wk.keys = append(wk.keys, kw)
		}
		return kw
	}
	more := map[string]bool{}
	for _, r := range runs {
		kw := get(r.Key)
		kw.held, kw.headRan = true, true
		for _, j := range r.Jobs {
			if dup(j.ID) {
				wk.dropped = append(wk.dropped, j.ID)
				continue
			}
			kw.run = append(kw.run, j)
		}
		kw.trim = len(r.Jobs) - 1
		more[r.Key] = r.More
	}
	for _, j := range stream {
		wk.acked = append(wk.acked, j.StreamID)
		if dup(j.ID) {
			continue
		}
		kw := get(j.Key)
		if snap.Held[j.Key] {
			kw.held = true
		}
		if kw.held && (!kw.headRan || more[j.Key]) {
			kw.deferred = append(kw.deferred, j)
			continue
		}
		kw.run = append(kw.run, j)
	}
	return wk
}

// runnable is every job to run, key by key.
func (wk *work) runnable() []store.Job {
	n := 0
	for _, kw := range wk.keys {
		n += len(kw.run)
	}
	out := make([]store.Job, 0, n)
	for _, kw := range wk.keys {
		out = append(out, kw.run...)
	}
	return out
}

// buildRequest turns jobs into a plugin request, with the state of every
// entity they touch; entity maps a handler to its entity type.
func buildRequest(jobs []store.Job, snap store.Snapshot, entity func(handler string) string) *pluginpb.HandleRequest {
	req := &pluginpb.HandleRequest{Jobs: make([]*pluginpb.Job, 0, len(jobs)), Entities: make([]*pluginpb.Entity, 0, len(jobs))}
	seen := make(map[store.EntityRef]bool, len(jobs))
	for _, j := range jobs {
		ref := store.EntityRef{Type: entity(j.Handler), Key: j.Key}
		if !seen[ref] {
			seen[ref] = true
			req.Entities = append(req.Entities, &pluginpb.Entity{Type: ref.Type, Key: ref.Key, State: snap.States[ref]})
		}
		req.Jobs = append(req.Jobs, &pluginpb.Job{Id: j.ID, Handler: j.Handler, Key: j.Key, Payload: j.Payload,
			Attempt: int32(j.Attempt), SubmittedAtMs: j.SubmittedAt})
	}
	return req
}

// markLoaded marks the states b writes that snap loaded (store.StateWrite.Existed).
func markLoaded(b *store.Batch, snap store.Snapshot) {
	for i := range b.States {
		b.States[i].Existed = snap.States[b.States[i].Entity] != nil
	}
}

// retryPolicy decides how often and when a job is tried again.
type retryPolicy struct {
	maxAttempts func(j store.Job) int
	base, max   time.Duration
	now         time.Time
	jitter      func(n int64) int64 // uniform in [0, n)
	// handlerWait bounds how long a job waits for an owner that serves its
	// handler before it is dead-lettered.
	handlerWait time.Duration
	// checkEmit refuses a job's emitted job whose handler no worker
	// serves; nil accepts every emit.
	checkEmit func(parent, handler string) error
	// stateTTL is how long a handler's entity states live after its
	// commit (0: for ever); nil: for ever.
	stateTTL func(handler string) time.Duration
}

// handlerRecheck is how long a job that waits for its handler stays
// parked before it is looked at again: soon at first, when a rolling
// upgrade is about to bring the handler, then less often.
func handlerRecheck(waited time.Duration) time.Duration {
	return min(max(waited/8, 250*time.Millisecond), 5*time.Second)
}

// attempts says "1 attempt", "2 attempts".
func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// delay is the wait before the attempt after attempt: exponential from
// base, capped at max, with half of it jittered so a burst of failures does
// not come back at once. A handler's retry-after wins when it is longer.
func (rp retryPolicy) delay(attempt int, retryAfterMs int64) time.Duration {
	d := rp.base << min(attempt-1, 20)
	if d <= 0 || d > rp.max {
		d = rp.max
	}
	if half := int64(d / 2); half > 0 {
		j := rp.jitter
		if j == nil {
			j = rand.Int64N
		}
		d = time.Duration(half + j(half))
	}
	return max(d, time.Duration(retryAfterMs)*time.Millisecond)
}

// notRun marks a job a failed plugin call never ran; it waits for its
// turn without an attempt counted.
var notRun = &pluginpb.Outcome{Status: pluginpb.Outcome_STATUS_UNSPECIFIED, Error: "not run"}

// waitHandler marks a job whose handler this worker does not serve: it
// was not run and waits, without an attempt counted, for an owner that
// serves it (a rolling upgrade may be adding the handler), up to the
// retry policy's handlerWait.
var waitHandler = &pluginpb.Outcome{Status: pluginpb.Outcome_STATUS_UNSPECIFIED, Error: "handler not served here"}

// deleteState marks a job of store.DeleteHandler: it ran no plugin, and
// commits the deletion of the state its payload's entity type has at its
// key.
var deleteState = &pluginpb.Outcome{Status: pluginpb.Outcome_OK}

// buildBatch turns plugin outcomes into one fenced commit. Every stream
// entry read is acked. Per key, jobs apply in order until one must be
// retried: that job is parked with a backoff and holds its key, and the
// key's later jobs wait behind it, so none commits before it. A job that
// fails for good, or whose attempts are spent, is dead-lettered with its
// error history and its key moves on; a job its handler rejected is
// finished with the reason, nothing else of it committed, and its key
// moves on. Emitted jobs get ids derived from
// their parent's, so a re-run of the same parent emits the same ids. A
// state is written to the entity type entity maps the job's handler to.
func buildBatch(wk *work, resp map[string]*pluginpb.Outcome, rp retryPolicy, entity func(handler string) string) (*store.Batch, error) {
	n := 0
	for _, kw := range wk.keys {
		n += len(kw.run)
	}
	b := &store.Batch{Acked: wk.acked, Attempts: make(map[string]int, n), Unparked: wk.dropped,
		Done: make([]string, 0, n), States: make([]store.StateWrite, 0, n), StateSteps: make([]store.StateWrite, 0, n)}
	stateAt := make(map[store.EntityRef]int, n)
	// state adds what a job does to its entity's state: one write per
	// entity in a batch, the last job's; a touch only renews the TTL of
	// what is there, so it never replaces a write or a delete.
	state := func(w store.StateWrite) {
		n, ok := stateAt[w.Entity]
		switch {
		case !ok:
			stateAt[w.Entity] = len(b.States)
			b.States = append(b.States, w)
		case w.Touch:
			b.States[n].TTL = w.TTL
		default:
			b.States[n] = w
		}
	}
	nowMs := rp.now.UnixMilli()
	// A parked or waiting job (not read from the stream) that finishes takes
	// its parked entry and body with it; stream jobs have neither.
	unpark := func(j store.Job) {
		if j.StreamID == "" {
			b.Unparked = append(b.Unparked, j.ID)
		}
	}
	for _, kw := range wk.keys {
		var parked *store.Job
		var front []store.Job
		gaveUpWaiting := false // the key's jobs after it were not run
	jobs:
		for i, j := range kw.run {
			o, ok := resp[j.ID]
			if !ok && gaveUpWaiting {
				o, ok = notRun, true
			}
			if !ok {
				return nil, fmt.Errorf("no outcome for job %q", j.ID)
			}
			if o == notRun {
				r := j
				r.NotBefore = nowMs
				parked, front = &r, kw.run[i+1:]
				break jobs
			}
			if o == waitFlow {
				// Held back by a pause or limit: parked on its key as it
				// is, no attempt spent, its key's later jobs behind it.
				r := j
				r.NotBefore = max(wk.flowUntil[j.ID], nowMs)
				parked, front = &r, kw.run[i+1:]
				break jobs
			}
			if o == waitHandler {
				r := j
				if r.WaitingSince == 0 {
					r.WaitingSince = nowMs
				}
				waited := time.Duration(nowMs-r.WaitingSince) * time.Millisecond
				if waited >= rp.handlerWait {
					msg := fmt.Sprintf("no worker that serves handler %q owned the job's partition within %v (--unknown-handler-wait): install its plugin on every worker, then replay the job",
						j.Handler, rp.handlerWait)
					r.Errors = append(append([]string(nil), j.Errors...), fmt.Sprintf("attempt %d: %s", j.Attempt, msg))
					b.Dead = append(b.Dead, store.DeadJob{Job: r, Error: msg})
					unpark(j)
					gaveUpWaiting = true
					continue
				}
				r.NotBefore = nowMs + handlerRecheck(waited).Milliseconds()
				wk.waiting = append(wk.waiting, r)
				parked, front = &r, kw.run[i+1:]
				break jobs
			}
			if o.Status == pluginpb.Outcome_OK && rp.checkEmit != nil {
				for _, e := range o.Emits {
					if err := rp.checkEmit(j.ID, e.GetHandler()); err != nil {
						// A retryable failure of the parent: nothing of
						// this attempt commits, the reason goes with it.
						o = &pluginpb.Outcome{JobId: j.ID, Status: pluginpb.Outcome_RETRY, Error: err.Error()}
						break
					}
				}
			}
			if o == deleteState {
				b.Done = append(b.Done, j.ID)
				b.Attempts[j.ID] = j.Attempt
				unpark(j)
				del := store.StateWrite{Entity: store.EntityRef{Type: string(j.Payload), Key: j.Key}, Delete: true}
				state(del)
				b.StateSteps = append(b.StateSteps, del)
				continue
			}
			if o.Status == pluginpb.Outcome_OK {
				o = checkPublications(o)
			}
			switch o.Status {
			case pluginpb.Outcome_OK:
				b.Done = append(b.Done, j.ID)
				b.Attempts[j.ID] = j.Attempt
				unpark(j)
				var ttl time.Duration
				if rp.stateTTL != nil {
					ttl = rp.stateTTL(j.Handler)
				}
				ref := store.EntityRef{Type: entity(j.Handler), Key: j.Key}
				switch {
				case o.StateChanged:
					state(store.StateWrite{Entity: ref, Value: o.State, TTL: ttl})
					b.StateSteps = append(b.StateSteps, store.StateWrite{Entity: ref, Value: o.State})
				case ttl > 0:
					state(store.StateWrite{Entity: ref, Touch: true, TTL: ttl})
				}
				if len(o.Result) > 0 {
					b.Results = append(b.Results, store.Result{JobID: j.ID, Value: o.Result})
				}
				for n, e := range o.Emits {
					b.Emits = append(b.Emits, store.Job{ID: store.EmittedID(j.ID, n), Handler: e.Handler, Key: e.Key, Payload: e.Payload})
				}
				for _, pub := range o.Publications {
					b.Publications = append(b.Publications, store.Publication{Topic: pub.Topic, JobID: j.ID, Message: pub.Message})
				}
			case pluginpb.Outcome_REJECTED:
				b.Rejected = append(b.Rejected, store.Rejection{JobID: j.ID, Attempts: j.Attempt, Reason: o.Error})
				unpark(j)
			case pluginpb.Outcome_RETRY:
				j.Errors = append(append([]string(nil), j.Errors...), fmt.Sprintf("attempt %d: %s", j.Attempt, o.Error))
				if j.Attempt >= rp.maxAttempts(j) {
					b.Dead = append(b.Dead, store.DeadJob{Job: j, Error: fmt.Sprintf("gave up after %s: %s", attempts(j.Attempt), o.Error)})
					unpark(j)
					continue
				}
				r := j
				r.NotBefore = nowMs + rp.delay(j.Attempt, o.RetryAfterMs).Milliseconds()
				r.Attempt++
				r.WaitingSince = 0 // it ran: a later wait for its handler counts afresh
				parked, front = &r, kw.run[i+1:]
				b.Retries = append(b.Retries, r)
				break jobs
			default:
				j.Errors = append(append([]string(nil), j.Errors...), fmt.Sprintf("attempt %d: %s", j.Attempt, o.Error))
				b.Dead = append(b.Dead, store.DeadJob{Job: j, Error: o.Error})
				unpark(j)
			}
		}
		kp := store.KeyPlan{Key: kw.key, Trim: kw.trim, Back: kw.deferred}
		switch {
		case parked != nil:
			kp.Park, kp.Front = parked, front
		case kw.headRan:
			kp.Next = true
		case !kw.held:
			continue // nothing held, nothing waits
		}
		b.Keys = append(b.Keys, kp)
	}
	return b, nil
}

// checkPublications turns an outcome that publishes to a topic with a bad
// name (a plugin not built with the SDK) into a retry of its job, with
// the reason: nothing of the attempt commits.
func checkPublications(o *pluginpb.Outcome) *pluginpb.Outcome {
	for _, pub := range o.Publications {
		if err := plugins.CheckTopic(pub.Topic); err != nil {
			return &pluginpb.Outcome{JobId: o.JobId, Status: pluginpb.Outcome_RETRY, Error: "publish: " + err.Error()}
		}
	}
	return o
}
