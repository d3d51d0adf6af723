package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/authz"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// canceller serves CancelJobs. It finds each job's partition and records
// the cancel there, so that it holds whatever happens next; then it has
// the partition's owner apply it at once (forwarded through the owner's
// breaker, like a Call) and waits, up to the caller's wait, for the
// owner's commit to tell how the job ended. The owner alone applies a
// cancel, in a fenced commit (see cancel_exec.go); when it cannot be
// reached, it finds the cancel within a second by itself.
type canceller struct {
	cfg   Config
	log   *slog.Logger
	store interface {
		Describe(ctx context.Context, ids []string) ([]store.JobInfo, error)
		RequestCancels(ctx context.Context, p int, ids []string, now time.Time) error
		StatusesIn(ctx context.Context, ids []string, partitions []int) ([]store.JobStatus, error)
	}
	grants interface {
		grantOf(p int) (lease.Grant, bool)
	}
	view    ringView
	peers   peerCaller
	holders interface {
		Holders(ctx context.Context, parts []int) (map[int]string, error)
	}
	exec    interface{ kickCancels(p int) }
	inspect *inspector // tells what a job whose cancel is pending is doing
}

// defaultCancelWait is how long CancelJobs waits for the owners by
// default; cancelPoll how often it reads the jobs' records meanwhile.
const (
	defaultCancelWait = 10 * time.Second
	cancelPoll        = 20 * time.Millisecond
)

// CancelJobs cancels queued, delayed and retrying jobs (see the proto).
func (a *API) CancelJobs(ctx context.Context, req *workerpb.CancelJobsRequest) (*workerpb.CancelJobsResponse, error) {
	return a.cancel.cancel(ctx, req)
}

func (c *canceller) cancel(ctx context.Context, req *workerpb.CancelJobsRequest) (*workerpb.CancelJobsResponse, error) {
	if len(req.Ids) == 0 {
		return nil, status.Error(codes.InvalidArgument, "cancel: no job ids")
	}
	for _, id := range req.Ids {
		if err := validateResultID(id); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "job id %q: %v", id, err)
		}
	}
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait <= 0 {
		wait = defaultCancelWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// A job whose partition is being split, or that moved to a child
	// since it was found, is found again: the cancel must be recorded
	// where the job is.
	var (
		infos  []store.JobInfo
		resp   *workerpb.CancelJobsResponse
		byPart map[int][]string
		at     map[string][]int // an id asked twice is answered twice
	)
	for {
		var err error
		if infos, err = c.store.Describe(ctx, req.Ids); err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		resp = &workerpb.CancelJobsResponse{Results: make([]*workerpb.CancelResult, len(infos))}
		byPart, at = map[int][]string{}, map[string][]int{}
		for i := range infos {
			j := &infos[i]
			at[j.ID] = append(at[j.ID], i)
			switch {
			case j.Partition < 0:
				resp.Results[i] = notFound(j)
			case j.State.Finished():
				resp.Results[i] = tooLate(j.ID, apiStates[j.State], false)
			case len(at[j.ID]) == 1:
				byPart[j.Partition] = append(byPart[j.Partition], j.ID)
			}
		}
		if req.Forwarded {
			for p := range byPart {
				if _, owned := c.grants.grantOf(p); !owned {
					return nil, status.Errorf(codes.FailedPrecondition, "%v %d (worker %s)", ErrNotOwner, p, c.cfg.ID)
				}
			}
		}
		err = c.request(ctx, byPart)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrMoving) || ctx.Err() != nil {
			return nil, status.Errorf(codes.Unavailable, "%v (no cancel was applied; send it again)", err)
		}
		select { // the split ends within a few hundred milliseconds
		case <-ctx.Done():
		case <-time.After(cancelPoll):
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p, ids := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := c.applyIn(ctx, p, ids, req.Forwarded)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				for _, i := range at[r.Id] {
					resp.Results[i] = r
				}
			}
		}()
	}
	wg.Wait()
	for i, r := range resp.Results {
		if r == nil { // the first of a repeated id answers for it
			resp.Results[i] = resp.Results[at[infos[i].ID][0]]
		}
	}
	return resp, nil
}

// request records the cancels of byPart's jobs in their partitions (a
// cancel asked twice counts once).
func (c *canceller) request(ctx context.Context, byPart map[int][]string) error {
	now := time.Now()
	for p, ids := range byPart {
		if err := c.store.RequestCancels(ctx, p, ids, now); err != nil {
			return err
		}
	}
	return nil
}

// applyIn has the owner of partition p apply the cancels of ids: this
// worker if it processes p, else the owner, forwarded. When the owner
// cannot be reached, the cancels wait for it in p, and this worker waits
// for their outcome.
func (c *canceller) applyIn(ctx context.Context, p int, ids []string, forwarded bool) []*workerpb.CancelResult {
	if _, owned := c.grants.grantOf(p); owned || forwarded {
		c.exec.kickCancels(p)
		return c.await(ctx, p, ids)
	}
	rs, ok := c.forward(ctx, p, ids)
	if !ok {
		return c.await(ctx, p, ids)
	}
	// The owner answers within one call's deadline; what it left pending
	// is waited for here, for the rest of the caller's wait.
	var left []string
	for _, r := range rs {
		if r.Pending {
			left = append(left, r.Id)
		}
	}
	if len(left) == 0 || ctx.Err() != nil {
		return rs
	}
	more := c.await(ctx, p, left)
	byID := make(map[string]*workerpb.CancelResult, len(more))
	for _, r := range more {
		byID[r.Id] = r
	}
	for i, r := range rs {
		if m := byID[r.Id]; m != nil {
			rs[i] = m
		}
	}
	return rs
}

// forward asks the owner the ring names, and once more the holder Redis
// names if the first answered "not the owner"; ok is false when neither
// answered.
func (c *canceller) forward(ctx context.Context, p int, ids []string) (rs []*workerpb.CancelResult, ok bool) {
	ring := c.view.current()
	if ring == nil {
		return nil, false
	}
	addr := c.view.addressOf(ring.OwnerOf(p))
	if addr == "" {
		return nil, false
	}
	rs, err := c.forwardTo(ctx, addr, ids)
	if err == nil {
		return rs, true
	}
	if status.Code(err) == codes.FailedPrecondition {
		if h, herr := c.holders.Holders(ctx, []int{p}); herr == nil && h[p] != "" {
			id := lease.WorkerID(h[p])
			if id == c.cfg.ID {
				c.exec.kickCancels(p)
				return c.await(ctx, p, ids), true
			}
			if addr2 := c.view.addressOf(id); addr2 != "" && addr2 != addr {
				if rs, err = c.forwardTo(ctx, addr2, ids); err == nil {
					return rs, true
				}
			}
		}
	}
	if !peer.Fault(err) && status.Code(err) != codes.FailedPrecondition {
		c.log.Warn("cancel: the owner refused the forwarded cancels; waiting for them here", "partition", p, "err", err)
	}
	return nil, false
}

// forwardTo sends ids to the worker at addr with the caller's role. The
// owner waits less than a peer call's deadline (and than this call has
// left), so that it answers in time, with what it left pending.
func (c *canceller) forwardTo(ctx context.Context, addr string, ids []string) ([]*workerpb.CancelResult, error) {
	wait := c.cfg.Breaker.Timeout * 3 / 4
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)*9/10)
	}
	var out []*workerpb.CancelResult
	err := c.peers.Call(authz.Forward(ctx), addr, func(ctx context.Context, w workerpb.WorkerClient) error {
		r, err := w.CancelJobs(ctx, &workerpb.CancelJobsRequest{Ids: ids, WaitMs: max(wait.Milliseconds(), 1), Forwarded: true})
		if err == nil {
			out = r.Results
		}
		return err
	})
	if err == nil && len(out) != len(ids) {
		err = status.Errorf(codes.Internal, "cancel: %d results for %d jobs", len(out), len(ids))
	}
	if err != nil && ctx.Err() == nil && status.Code(err) != codes.FailedPrecondition {
		c.log.Debug("cancel: owner unreachable; waiting for it to find the cancels", "addr", addr, "err", err)
	}
	return out, err
}

// await reads the records of ids in partition p until each finished or
// ctx ends, and tells how each ended; a cancel not applied by then is
// pending, with what the job does now.
func (c *canceller) await(ctx context.Context, p int, ids []string) []*workerpb.CancelResult {
	parts := make([]int, len(ids))
	for i := range parts {
		parts[i] = p
	}
	out := make([]*workerpb.CancelResult, len(ids))
	t := time.NewTicker(cancelPoll)
	defer t.Stop()
	for {
		sts, err := c.store.StatusesIn(ctx, ids, parts)
		left := false
		for i, st := range sts {
			switch {
			case out[i] != nil:
			case st.Cancelled:
				out[i] = &workerpb.CancelResult{Id: st.ID, State: workerpb.JobResult_CANCELLED, Cancelled: true, Message: "cancelled"}
			case st.Dead:
				out[i] = tooLate(st.ID, workerpb.JobResult_DEAD, true)
			case st.Rejected:
				out[i] = tooLate(st.ID, workerpb.JobResult_REJECTED, true)
			case st.Finished:
				out[i] = tooLate(st.ID, workerpb.JobResult_DONE, true)
			default:
				left = true
			}
		}
		if err == nil && !left {
			return out
		}
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
		}
		break
	}
	return c.pending(p, ids, out)
}

// pendingLook bounds the look at the jobs whose cancels are pending, so
// that a wait of one call's deadline still answers within it.
const pendingLook = 250 * time.Millisecond

// pending fills in the cancels of ids not applied in time, with what
// their jobs do now, as far as it can tell within pendingLook.
func (c *canceller) pending(p int, ids []string, out []*workerpb.CancelResult) []*workerpb.CancelResult {
	ctx, cancel := context.WithTimeout(context.Background(), pendingLook)
	defer cancel()
	var left []string
	for i, r := range out {
		if r == nil {
			left = append(left, ids[i])
		}
	}
	now := map[string]*workerpb.JobInfo{}
	if c.inspect != nil {
		if got, err := c.inspect.get(ctx, &workerpb.GetJobsRequest{Ids: left}); err == nil {
			for _, j := range got.Jobs {
				now[j.Id] = j
			}
		}
	}
	for i, r := range out {
		if r != nil {
			continue
		}
		r = &workerpb.CancelResult{Id: ids[i], State: workerpb.JobResult_QUEUED, Pending: true}
		if j := now[ids[i]]; j != nil {
			r.State = j.State
		}
		switch {
		case finishedState(r.State):
			// It ended as the wait did.
			r = tooLate(ids[i], r.State, true)
			if r.State == workerpb.JobResult_CANCELLED {
				r.Cancelled, r.Message = true, "cancelled"
			}
		case r.State == workerpb.JobResult_RUNNING:
			r.Message = fmt.Sprintf("cancel asked while an attempt runs: if the attempt asks for a retry, the retry is cancelled; if it commits, the job has run (partition %d)", p)
		default:
			r.Message = fmt.Sprintf("cancel asked, not applied yet: partition %d's owner applies it when its batch reaches the job (now %s)", p, stateName(r.State))
		}
		out[i] = r
	}
	return out
}

// tooLate answers a cancel of a job that had finished; after says the
// cancel had been asked (it came too late) rather than found so at once.
func tooLate(id string, st workerpb.JobResult_State, after bool) *workerpb.CancelResult {
	r := &workerpb.CancelResult{Id: id, State: st}
	switch st {
	case workerpb.JobResult_CANCELLED:
		r.Message = "already cancelled"
	case workerpb.JobResult_DONE:
		r.Message = "already ran: it committed before the cancel"
		if !after {
			r.Message = "already ran"
		}
	case workerpb.JobResult_DEAD:
		r.Message = "already finished: dead-lettered ('coordinator dlq show " + id + "')"
	case workerpb.JobResult_REJECTED:
		r.Message = "already finished: its handler rejected it"
	}
	return r
}

// notFound answers a cancel of a job that is in no partition.
func notFound(j *store.JobInfo) *workerpb.CancelResult {
	r := &workerpb.CancelResult{Id: j.ID, State: apiStates[j.State],
		Message: "no such job (never submitted, or its record expired)"}
	if j.State == store.StateQueued {
		// An emitted job on its way: no record names its partition yet.
		r.Message = "cannot be cancelled: " + j.Note + "; an emitted job is found by its id only once it holds or waits behind its key, or has finished"
	}
	return r
}

// stateName is a state as every command prints it: the enum's name in
// lower case (client.StateName).
func stateName(s workerpb.JobResult_State) string { return strings.ToLower(s.String()) }
