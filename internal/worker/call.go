package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/internal/authz"
	"github.com/corralhq/corral/internal/jobid"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/sharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ErrNotOwner is what a worker answers to a forwarded Call for a partition
// it does not own (the caller's view of the ring was stale).
var ErrNotOwner = errors.New("not the owner of the partition")

// callPoll is how often a waiting Call reads the job's record, for jobs
// committed by another worker (the durable path) or a missed wake-up.
const callPoll = 10 * time.Millisecond

// callRouter routes a Call to the owner of its key's partition: run here
// at once when this worker owns it (the direct path), forwarded to the
// owner through its breaker otherwise, and through the durable queue when
// neither works.
type callRouter struct {
	cfg    Config
	log    *slog.Logger
	grants interface {
		activeGrant(p int) (lease.Grant, bool)
	}
	view    ringView
	peers   peerCaller
	budget  *breaker.Budget // bounds the second forward, to the holder Redis names
	holders interface {
		Holders(ctx context.Context, parts []int) (map[int]string, error)
	}
	exec    callRunner
	store   callStore
	intake  callIntake
	calls   callWaiters // Calls waiting on this worker for their job's commit
	direct  directPath
	metrics *workerMetrics
}

// ringView is the cluster as the router sees it.
type ringView interface {
	current() *sharding.Ring
	addressOf(id string) string
}

// peerCaller calls another worker through its breaker (client.Pool).
type peerCaller interface {
	Call(ctx context.Context, addr string, fn func(ctx context.Context, c workerpb.WorkerClient) error) error
}

// callRunner runs a Call's job here and commits it (the executor).
type callRunner interface {
	runCall(ctx context.Context, p int, grant lease.Grant, j store.Job, guard *store.Guard, now time.Time) (*store.Batch, error)
}

// callStore is what the direct path needs of the job store.
type callStore interface {
	ViewForCall(ctx context.Context, job store.Job, entity string) (*store.Guard, error)
	ReserveID(ctx context.Context, job store.Job) error
	HasRecord(ctx context.Context, p int, id string) (bool, error)
}

// callIntake enqueues a Call that takes the queue, and reads its result.
type callIntake interface {
	submit(ctx context.Context, req *workerpb.SubmitRequest) (*workerpb.SubmitResponse, error)
	results(ctx context.Context, ids, keys []string, wait time.Duration) (*workerpb.GetResultResponse, error)
	validate(j *workerpb.Job, id string, handlers map[string]host.HandlerInfo) error
	admit(j *workerpb.Job, id string, p int, handlers map[string]host.HandlerInfo) error
	handlers() map[string]host.HandlerInfo
}

// directPath is what the direct path keeps between calls.
type directPath struct {
	// mu serializes direct calls per partition (by p mod its size), so
	// two on one key do not run on the same state and refuse each other.
	mu     [64]sync.Mutex
	states stateCache // entity states of recent direct calls
}

// Call runs one job on the owner of its key's partition and returns its
// result. The owner runs it at once when no job of its key is queued
// (callDirect), else through the partition's queue, so it runs in order
// with the key's other jobs either way and commits under the owner's
// fencing epoch.
// When the owner cannot be reached (down, slow, breaker open) the job is
// enqueued from here and its result awaited until the deadline: a Call
// accepted is never lost, and its id makes every path apply it once.
func (a *API) Call(ctx context.Context, req *workerpb.CallRequest) (*workerpb.CallResponse, error) {
	return a.router.call(ctx, req)
}

func (rt *callRouter) call(ctx context.Context, req *workerpb.CallRequest) (*workerpb.CallResponse, error) {
	if req.Job == nil {
		return nil, status.Error(codes.InvalidArgument, "call: no job")
	}
	if req.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	job := proto.Clone(req.Job).(*workerpb.Job)
	if job.Id == "" {
		// Fixed before the first hop, so a forward and a fallback of the
		// same call are one job.
		job.Id = jobid.New(time.Now())
	}
	if err := validateKey(job.Key); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p := rt.cfg.routing().PartitionOf(job.Key)
	if !req.Forwarded {
		// Refused here, before a forward, when no owner could run it.
		if err := rt.intake.admit(job, job.Id, p, rt.intake.handlers()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if req.Forwarded {
		// Counted where the client's call came in, not again here.
		return rt.route(ctx, job, p, true)
	}
	start := time.Now()
	resp, err := rt.route(ctx, job, p, false)
	// Answered calls only: a failed one took no path to its end.
	if rt.metrics != nil && resp != nil {
		path := "direct"
		switch {
		case resp.Durable:
			path = "fallback"
		case resp.ServedBy != rt.cfg.ID:
			path = "forwarded"
		}
		rt.metrics.m.ObserveCall(path, time.Since(start))
	}
	return resp, err
}

// route runs the call here when this worker owns p, else forwards it to
// the owner, else takes the durable path.
func (rt *callRouter) route(ctx context.Context, job *workerpb.Job, p int, forwarded bool) (*workerpb.CallResponse, error) {
	if _, owned := rt.grants.activeGrant(p); owned {
		if resp, ok, err := rt.callDirect(ctx, job, p); ok {
			return resp, err
		}
		return rt.callHere(ctx, job, false)
	}
	if forwarded {
		return nil, status.Errorf(codes.FailedPrecondition, "%v %d (worker %s)", ErrNotOwner, p, rt.cfg.ID)
	}
	if resp, done, err := rt.callOwner(ctx, job, p); done {
		return resp, err
	}
	return rt.callHere(ctx, job, true)
}

// callOwner forwards to the owner the ring names, and once more to the
// holder Redis names if the first answered "not the owner". done is false
// when the caller should fall back to the durable path.
func (rt *callRouter) callOwner(ctx context.Context, job *workerpb.Job, p int) (resp *workerpb.CallResponse, done bool, err error) {
	ring := rt.view.current()
	if ring == nil {
		return nil, false, nil
	}
	owner := ring.OwnerOf(p)
	addr := rt.view.addressOf(owner)
	if owner == "" || owner == rt.cfg.ID || addr == "" {
		return nil, false, nil
	}
	rt.budget.Called()
	resp, err = rt.forward(ctx, addr, job)
	if err == nil {
		return resp, true, nil
	}
	if status.Code(err) == codes.FailedPrecondition && rt.budget.TryRetry() {
		h, herr := rt.holders.Holders(ctx, []int{p})
		if herr == nil && h[p] != "" {
			id := lease.WorkerID(h[p])
			if id == rt.cfg.ID {
				return nil, false, nil // claimed here meanwhile: run it here
			}
			if addr2 := rt.view.addressOf(id); addr2 != "" && addr2 != addr {
				if resp, err = rt.forward(ctx, addr2, job); err == nil {
					return resp, true, nil
				}
			}
		}
	}
	if !peer.Fault(err) && status.Code(err) != codes.FailedPrecondition {
		return nil, true, err // the request itself is wrong: falling back would not help
	}
	rt.log.Debug("call: owner unreachable; taking the durable path", "job", job.Id, "partition", p, "owner", owner, "err", err)
	return nil, false, nil
}

// forward calls the owner through its breaker. It leaves the caller half
// of its remaining time, so a slow owner still leaves room for the
// durable fallback.
func (rt *callRouter) forward(ctx context.Context, addr string, job *workerpb.Job) (*workerpb.CallResponse, error) {
	fctx := ctx
	var remaining time.Duration
	if dl, ok := ctx.Deadline(); ok {
		remaining = time.Until(dl)
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, remaining/2)
		defer cancel()
	}
	// The owner judges the call by the original caller's role, not only by
	// this worker's peer certificate.
	fctx = authz.Forward(fctx)
	var out *workerpb.CallResponse
	err := rt.peers.Call(fctx, addr, func(ctx context.Context, c workerpb.WorkerClient) error {
		r, err := c.Call(ctx, &workerpb.CallRequest{Job: job, TimeoutMs: (remaining / 2).Milliseconds(), Forwarded: true})
		out = r
		return err
	})
	if errors.Is(err, breaker.ErrOpen) {
		// Fails fast; counts against nothing, the job was not even sent.
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return out, err
}

// callHere enqueues the job through the normal submit path (validation,
// dedup by id) and waits for it to finish: woken by the local commit when
// this worker owns the partition, by polling its record otherwise.
func (rt *callRouter) callHere(ctx context.Context, job *workerpb.Job, durable bool) (*workerpb.CallResponse, error) {
	done, cancel := rt.calls.wait(job.Id)
	defer cancel()
	sub, err := rt.intake.submit(ctx, &workerpb.SubmitRequest{Jobs: []*workerpb.Job{job}})
	if err != nil {
		return nil, err
	}
	if len(sub.Results) != 1 {
		return nil, status.Errorf(codes.Internal, "call: submit returned %d results for one job", len(sub.Results))
	}
	if e := sub.Results[0].Error; e != "" {
		// Submit reports per-job errors as text; a reused id is the one
		// the caller can act on differently.
		if strings.Contains(e, store.ErrConflict.Error()) {
			return nil, status.Error(codes.AlreadyExists, e)
		}
		return nil, status.Error(codes.InvalidArgument, e)
	}
	return rt.await(ctx, job, durable, done)
}

// await waits for a Call's job to finish: woken by done when this worker
// commits it, by polling its record otherwise.
func (rt *callRouter) await(ctx context.Context, job *workerpb.Job, durable bool, done <-chan *workerpb.JobResult) (*workerpb.CallResponse, error) {
	served := ""
	if !durable {
		served = rt.cfg.ID
	}
	reply := func(r *workerpb.JobResult) *workerpb.CallResponse {
		return &workerpb.CallResponse{Id: job.Id, Result: r, ServedBy: served, Durable: durable}
	}
	t := time.NewTicker(callPoll)
	defer t.Stop()
	for {
		select {
		case r := <-done:
			return reply(r), nil
		case <-t.C:
			// The key names the partition: one read, not one per partition.
			got, err := rt.intake.results(ctx, []string{job.Id}, []string{job.Key}, 0)
			if err != nil {
				if ctx.Err() == nil {
					rt.log.Debug("call: reading result failed", "job", job.Id, "err", err)
				}
				continue
			}
			if len(got.Results) == 1 && finished(got.Results[0]) {
				return reply(got.Results[0]), nil
			}
		case <-ctx.Done():
			return nil, status.Errorf(codes.DeadlineExceeded,
				"call %s was accepted but did not finish before the deadline; it stays queued ('coordinator result %s' reads it later)", job.Id, job.Id)
		}
	}
}

func finished(r *workerpb.JobResult) bool {
	return r.State == workerpb.JobResult_DONE || r.State == workerpb.JobResult_DEAD || r.State == workerpb.JobResult_REJECTED ||
		r.State == workerpb.JobResult_CANCELLED
}

// callWaiters wakes Calls waiting on this worker when their job commits.
type callWaiters struct {
	n  atomic.Int64 // waiters registered; commits skip the work when 0
	mu sync.Mutex
	m  map[string][]chan *workerpb.JobResult
}

func (c *callWaiters) wait(id string) (<-chan *workerpb.JobResult, func()) {
	ch := make(chan *workerpb.JobResult, 1)
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string][]chan *workerpb.JobResult{}
	}
	c.m[id] = append(c.m[id], ch)
	c.mu.Unlock()
	c.n.Add(1)
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		chs := c.m[id]
		for i, x := range chs {
			if x == ch {
				chs = append(chs[:i], chs[i+1:]...)
				c.n.Add(-1)
				break
			}
		}
		if len(chs) == 0 {
			delete(c.m, id)
		} else {
			c.m[id] = chs
		}
	}
}

func (c *callWaiters) wake(id string, r *workerpb.JobResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.m[id] {
		select {
		case ch <- r:
		default:
		}
	}
}

// committed wakes the Calls waiting for jobs a commit just finished.
func (c *callWaiters) committed(b *store.Batch) {
	if c.n.Load() == 0 {
		return
	}
	results := make(map[string][]byte, len(b.Results))
	for _, r := range b.Results {
		results[r.JobID] = r.Value
	}
	for _, id := range b.Done {
		c.wake(id, &workerpb.JobResult{Id: id, State: workerpb.JobResult_DONE, Result: results[id]})
	}
	for _, d := range b.Dead {
		c.wake(d.Job.ID, &workerpb.JobResult{Id: d.Job.ID, State: workerpb.JobResult_DEAD, Error: d.Error, Attempts: int32(d.Job.Attempt)})
	}
	for _, r := range b.Rejected {
		c.wake(r.JobID, &workerpb.JobResult{Id: r.JobID, State: workerpb.JobResult_REJECTED, Error: r.Reason, Attempts: int32(max(r.Attempts, 1))})
	}
	for _, r := range b.Cancelled {
		c.wake(r.JobID, &workerpb.JobResult{Id: r.JobID, State: workerpb.JobResult_CANCELLED, Error: r.Error, Attempts: int32(r.Attempts)})
	}
	for _, w := range b.Unwaited {
		c.wake(w.ID, &workerpb.JobResult{Id: w.ID, State: workerpb.JobResult_CANCELLED, Attempts: int32(max(w.Attempt-1, 0))})
	}
}
