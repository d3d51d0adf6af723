package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/jobid"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/plugins/host"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// jobStore is what the intake needs of the job store.
type jobStore interface {
	Enqueue(ctx context.Context, jobs []store.Job) ([]store.EnqueueResult, error)
	StatusesIn(ctx context.Context, ids []string, partitions []int) ([]store.JobStatus, error)
}

// jobIntake validates and enqueues submitted jobs, and reads their
// results.
type jobIntake struct {
	cfg     Config
	store   jobStore
	plugins interface {
		Handlers() map[string]host.HandlerInfo
	}
	catalog *handlerCatalog // which worker serves which handler
	tracer  *tracing.Tracer // nil: tracing off
	// commits, when set, tells waits for results of the commits that
	// finish jobs, instead of their polling every resultPoll.
	commits finishedLogs
	// layout, when set, reads the partition layout again (after a
	// partition refused jobs because it was split).
	layout func(context.Context)
}

// finishedLogs is what result waits need of the store: the partitions'
// logs of finished jobs, which every commit appends to.
type finishedLogs interface {
	FinishedFrom(ctx context.Context, partitions []int) (map[int]string, error)
	WaitFinished(ctx context.Context, from map[int]string, ids map[string]bool, block time.Duration) (bool, error)
}

func (ji *jobIntake) handlers() map[string]host.HandlerInfo { return ji.plugins.Handlers() }

func (ji *jobIntake) partitionOf(key string) int {
	return ji.cfg.routing().PartitionOf(key)
}

// Submit validates every job and enqueues the valid ones in one pipeline.
// A rejected job gets its reason and nothing is written for it.
func (a *API) Submit(ctx context.Context, req *workerpb.SubmitRequest) (*workerpb.SubmitResponse, error) {
	return a.intake.submit(ctx, req)
}

func (ji *jobIntake) submit(ctx context.Context, req *workerpb.SubmitRequest) (*workerpb.SubmitResponse, error) {
	handlers := ji.plugins.Handlers()
	now := time.Now()
	n := len(req.Jobs)
	// One allocation for all results and one for all store jobs: a file
	// submission sends thousands of jobs per call.
	rs := make([]workerpb.SubmitResult, n)
	results := make([]*workerpb.SubmitResult, n)
	jobs := make([]store.Job, 0, n)
	slots := make([]int, 0, n)
	for i, in := range req.Jobs {
		res := &rs[i]
		results[i] = res
		res.Id = in.Id
		if res.Id == "" {
			res.Id = jobid.New(now)
		}
		p := ji.partitionOf(in.Key)
		if err := ji.admit(in, res.Id, p, handlers); err != nil {
			res.Error = err.Error()
			continue
		}
		res.Partition = int32(p)
		jobs = append(jobs, store.Job{ID: res.Id, Handler: in.Handler, Key: in.Key, Payload: in.Payload,
			Attempt: 1, SubmittedAt: now.UnixMilli(), NotBefore: in.NotBeforeMs, MaxAttempts: int(in.MaxAttempts),
			TimeoutMs: in.TimeoutMs, Partition: p})
		slots = append(slots, i)
	}
	var spans []trace.Span
	if ji.tracer != nil {
		spans = ji.startEnqueue(ctx, req.Jobs, slots, jobs)
	}
	enq, err := ji.enqueue(ctx, jobs)
	for n := range jobs {
		results[slots[n]].Partition = int32(jobs[n].Partition) // a split may have moved it
	}
	if spans != nil {
		endEnqueue(spans, enq, err)
	}
	if err != nil {
		if full := (*store.QueueFullError)(nil); errors.As(err, &full) {
			return nil, queueFullStatus(full)
		}
		return nil, status.Errorf(codes.Unavailable, "enqueue: %v", err)
	}
	// Only bad input is a job's own error. Anything else (Redis loading,
	// timing out or gone) fails the whole call as Unavailable, so the
	// caller sends it again with the same ids: the jobs this call did
	// enqueue come back as duplicates, and no job is reported rejected.
	for _, r := range enq {
		if r.Err != nil && !errors.Is(r.Err, store.ErrConflict) {
			return nil, status.Errorf(codes.Unavailable, "enqueue: %v (no job was rejected; send the call again with the same ids)", r.Err)
		}
	}
	for n, r := range enq {
		res := results[slots[n]]
		res.Duplicate = r.Duplicate
		if r.Duplicate {
			res.State = endState[r.End]
		}
		if r.Err != nil {
			res.Error = r.Err.Error()
		}
	}
	return &workerpb.SubmitResponse{Results: results}, nil
}

// movingRetry is how long a submission waits between tries while a
// partition it writes to is being split.
const movingRetry = 10 * time.Millisecond

// enqueue is store.Enqueue that follows splits (coordinator reshard): the
// jobs a partition refused because it is being split, or was split since
// this worker last read the layout, are routed again and sent again until
// they land, for as long as ctx lasts. Each refused job is one of the last
// of its partition's in jobs, so they go again in the same order and
// per-key order holds. A job's Partition is where it was enqueued.
func (ji *jobIntake) enqueue(ctx context.Context, jobs []store.Job) ([]store.EnqueueResult, error) {
	res, err := ji.store.Enqueue(ctx, jobs)
	for err == nil {
		var again []int
		for i := range res {
			if errors.Is(res[i].Err, store.ErrMoving) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			return res, nil
		}
		sleep(ctx, movingRetry)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("enqueue: %w (%v)", ctx.Err(), res[again[0]].Err)
		}
		if ji.layout != nil {
			ji.layout(ctx) // the store routes them again by what it reads
		}
		sub := make([]store.Job, len(again))
		for n, i := range again {
			sub[n] = jobs[i]
		}
		var r2 []store.EnqueueResult
		if r2, err = ji.store.Enqueue(ctx, sub); err != nil {
			break
		}
		for n, i := range again {
			res[i], jobs[i].Partition = r2[n], sub[n].Partition
		}
	}
	return nil, err
}

// startEnqueue starts a corral.enqueue span per valid job, under the
// traceparent it was submitted with (a new trace without one), and has the
// job carry the span's traceparent to its batch, plugin call and commit.
func (ji *jobIntake) startEnqueue(ctx context.Context, in []*workerpb.Job, slots []int, jobs []store.Job) []trace.Span {
	spans := make([]trace.Span, len(jobs))
	for n := range jobs {
		j := &jobs[n]
		sctx, span := ji.tracer.StartFrom(ctx, tracing.SpanEnqueue, in[slots[n]].GetTraceparent(), false,
			tracing.AttrJobID.String(j.ID), tracing.AttrHandler.String(j.Handler), tracing.AttrPartition.Int(j.Partition))
		j.Trace = tracing.FromContext(sctx)
		spans[n] = span
	}
	return spans
}

// endEnqueue ends the enqueue spans with what became of their jobs.
func endEnqueue(spans []trace.Span, enq []store.EnqueueResult, err error) {
	for n, s := range spans {
		switch {
		case err != nil:
			tracing.Fail(s, err)
		case n < len(enq) && enq[n].Err != nil:
			tracing.Fail(s, enq[n].Err)
		case n < len(enq) && enq[n].Duplicate:
			s.SetAttributes(attribute.Bool("corral.job.duplicate", true))
		}
		s.End()
	}
}

// endState is the state a duplicate's End says its job is in.
var endState = map[store.End]workerpb.JobResult_State{
	store.NotEnded: workerpb.JobResult_QUEUED, store.EndedDone: workerpb.JobResult_DONE, store.EndedDead: workerpb.JobResult_DEAD,
	store.EndedRejected: workerpb.JobResult_REJECTED, store.EndedCancelled: workerpb.JobResult_CANCELLED,
}

// admit is validate, and then refuses a job whose handler the owner of its
// partition p does not serve. A handler this worker does not serve is
// refused when a member publishes it internal, and accepted when that
// owner publishes it (workers differ during a rolling upgrade): what this
// worker cannot check, the payload's shape and the handler's limits, is
// left to the owner's plugin.
func (ji *jobIntake) admit(j *workerpb.Job, id string, p int, handlers map[string]host.HandlerInfo) error {
	if _, ok := handlers[j.Handler]; !ok {
		if ji.catalog.internal(j.Handler, handlers) {
			return ji.check(j, id, host.HandlerInfo{Internal: true})
		}
		if ji.catalog.ownerServes(j.Handler, p, handlers) {
			return ji.check(j, id, host.HandlerInfo{})
		}
	}
	if err := ji.validate(j, id, handlers); err != nil {
		return err
	}
	return ji.catalog.ownerLacks(j.Handler, j.Key, p, handlers)
}

func (ji *jobIntake) validate(j *workerpb.Job, id string, handlers map[string]host.HandlerInfo) error {
	h, ok := handlers[j.Handler]
	if !ok {
		return ji.catalog.unknownHere(j.Handler, handlers)
	}
	return ji.check(j, id, h)
}

// check validates a job's key, payload and options against what its
// handler h declares; a handler declared internal is refused.
func (ji *jobIntake) check(j *workerpb.Job, id string, h host.HandlerInfo) error {
	if err := validateID(id); err != nil {
		return err
	}
	if h.Internal {
		return internalHandlerError{handler: j.Handler}
	}
	if h.Broadcast {
		return fmt.Errorf("%w: handler %s is a broadcast handler: run it with coordinator broadcast", ErrUnknownHandler, j.Handler)
	}
	if err := validateKey(j.Key); err != nil {
		return err
	}
	if err := checkPayload(j.Payload, ji.cfg.MaxPayloadBytes, shapeOf(declOf(h))); err != nil {
		return err
	}
	return validateOptions(j.MaxAttempts, j.TimeoutMs, ji.cfg.MaxAttemptsLimit, h.Timeout)
}

// resultPoll is how often GetResult re-reads jobs it waits for when it
// cannot wait on the finished logs.
const resultPoll = 20 * time.Millisecond

// GetResult reads jobs' status and results, waiting up to wait_ms for the
// unfinished ones.
func (a *API) GetResult(ctx context.Context, req *workerpb.GetResultRequest) (*workerpb.GetResultResponse, error) {
	for _, id := range req.Ids {
		if err := validateResultID(id); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "job id %q: %v", id, err)
		}
	}
	return a.intake.results(ctx, req.Ids, nil, time.Duration(req.WaitMs)*time.Millisecond)
}

// results reads jobs' status and results, waiting up to wait for the
// unfinished ones. keys, when given, are the jobs' keys: each is read in its
// own partition only, instead of in every partition (for Call, which knows
// its job's key).
func (ji *jobIntake) results(ctx context.Context, ids, keys []string, wait time.Duration) (*workerpb.GetResultResponse, error) {
	var parts []int
	if keys != nil {
		parts = make([]int, len(ids))
		for i := range ids {
			parts[i] = -1
			if i < len(keys) && keys[i] != "" {
				v := ji.cfg.routing().Load()
				parts[i] = v.PartitionOf(keys[i])
				if v.Parent(keys[i], parts[i], time.Now().UnixMilli()) >= 0 {
					parts[i] = -1 // its key moved by a reshard: the job may be in either
				}
			}
		}
	}
	deadline := time.Now().Add(wait)
	var from map[int]string // where the wait is in the finished logs
	for {
		if from == nil && wait > 0 && ji.commits != nil {
			// Placed before the statuses are read: a job finishing
			// between the two is in the logs after from.
			from, _ = ji.commits.FinishedFrom(ctx, ji.waitPartitions(parts))
		}
		sts, err := ji.store.StatusesIn(ctx, ids, parts)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		resp := &workerpb.GetResultResponse{Results: make([]*workerpb.JobResult, len(sts))}
		pending := map[string]bool{}
		for i, st := range sts {
			r := &workerpb.JobResult{Id: st.ID, Result: st.Result, Error: st.Error, Attempts: int32(st.Attempts)}
			switch {
			case !st.Known:
				r.State = workerpb.JobResult_UNKNOWN
			case st.Dead:
				r.State = workerpb.JobResult_DEAD
			case st.Rejected:
				r.State = workerpb.JobResult_REJECTED
			case st.Cancelled:
				r.State = workerpb.JobResult_CANCELLED
			case st.Finished:
				r.State = workerpb.JobResult_DONE
			default:
				r.State = workerpb.JobResult_QUEUED
				pending[st.ID] = true
			}
			resp.Results[i] = r
		}
		if len(pending) == 0 || time.Until(deadline) <= 0 {
			return resp, nil
		}
		if from != nil {
			// Woken by the commit that finishes one of them; read again
			// at least every resultRecheck, for a job finished otherwise.
			_, err := ji.commits.WaitFinished(ctx, from, pending, min(resultRecheck, time.Until(deadline)))
			if ctx.Err() != nil {
				return resp, nil // what is known at the deadline; QUEUED says not finished
			}
			if err == nil {
				continue
			}
			from = nil // Redis failed the wait: poll instead, and place it again
		}
		t := time.NewTimer(min(resultPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, nil // what is known at the deadline; QUEUED says not finished
		case <-t.C:
		}
	}
}

// resultRecheck is the longest a result wait goes without reading its
// jobs' statuses again, though no commit named them.
const resultRecheck = time.Second

// waitPartitions are the partitions whose finished logs a wait reads: the
// jobs' own when every key is known, else all of them.
func (ji *jobIntake) waitPartitions(parts []int) []int {
	var out []int
	for _, p := range parts {
		if p < 0 {
			out = nil
			break
		}
		out = append(out, p)
	}
	if out == nil {
		for p := range ji.cfg.routing().Partitions() {
			out = append(out, p)
		}
	}
	return out
}

// ListDeadLetters pages through the dead-letter store, or shows given ids.
func (a *API) ListDeadLetters(ctx context.Context, req *workerpb.ListDeadLettersRequest) (*workerpb.ListDeadLettersResponse, error) {
	var recs []store.DeadRecord
	var next string
	var err error
	if len(req.Ids) > 0 {
		recs, err = a.store.DeadLetters(ctx, req.Ids)
	} else {
		limit := int(req.Limit)
		if limit <= 0 {
			limit = 100
		}
		recs, next, err = a.store.ListDead(ctx, limit, req.After)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	resp := &workerpb.ListDeadLettersResponse{Next: next, Dead: make([]*workerpb.DeadLetter, len(recs))}
	for i, r := range recs {
		resp.Dead[i] = &workerpb.DeadLetter{Id: r.ID, Handler: r.Handler, Key: r.Key, Payload: r.Payload,
			Attempts: int32(r.Attempts), Errors: r.Errors, DeadAtMs: r.DeadAtMs, Partition: int32(r.Partition)}
	}
	return resp, nil
}

// ReplayDeadLetters submits dead letters again with fresh attempts.
func (a *API) ReplayDeadLetters(ctx context.Context, req *workerpb.DeadLetterIDs) (*workerpb.DeadLetterCount, error) {
	ids, err := a.deadIDs(ctx, req)
	if err != nil {
		return nil, err
	}
	n, err := a.store.ReplayDead(ctx, ids)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &workerpb.DeadLetterCount{Count: int64(n)}, nil
}

// PurgeDeadLetters deletes dead letters for good.
func (a *API) PurgeDeadLetters(ctx context.Context, req *workerpb.DeadLetterIDs) (*workerpb.DeadLetterCount, error) {
	ids, err := a.deadIDs(ctx, req)
	if err != nil {
		return nil, err
	}
	n, err := a.store.PurgeDead(ctx, ids)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &workerpb.DeadLetterCount{Count: int64(n)}, nil
}

func (a *API) deadIDs(ctx context.Context, req *workerpb.DeadLetterIDs) ([]string, error) {
	if req.All == (len(req.Ids) > 0) {
		return nil, status.Error(codes.InvalidArgument, "give either ids or all, not both and not neither")
	}
	if !req.All {
		for _, id := range req.Ids {
			if err := validateID(id); err != nil {
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
		}
		return req.Ids, nil
	}
	ids, err := a.store.AllDead(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return ids, nil
}
