package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// StateName is how Corral names a job state everywhere, coordinator
// commands included: the state's enum name in lower case (queued,
// delayed, retrying, running, done, dead, rejected, cancelled, unknown).
func StateName(s workerpb.JobResult_State) string { return strings.ToLower(s.String()) }

// ListableStates are the states ListJobs lists, in a job's order of life.
var ListableStates = []workerpb.JobResult_State{
	workerpb.JobResult_QUEUED, workerpb.JobResult_DELAYED, workerpb.JobResult_RETRYING, workerpb.JobResult_RUNNING,
	workerpb.JobResult_DONE, workerpb.JobResult_DEAD, workerpb.JobResult_REJECTED, workerpb.JobResult_CANCELLED,
}

// ParseState reads the name of a state ListJobs lists.
func ParseState(name string) (workerpb.JobResult_State, error) {
	var names []string
	for _, s := range ListableStates {
		if strings.EqualFold(name, StateName(s)) {
			return s, nil
		}
		names = append(names, StateName(s))
	}
	return 0, fmt.Errorf("no job state %q: give one of %s", name, strings.Join(names, ", "))
}

// ListJobs asks a worker for a page of the jobs in req.State (see
// workerpb.ListJobsRequest): req.After is the Next of the page before.
// RUNNING jobs are asked of every worker; those that could not answer
// are named in Unreachable.
func (c *Client) ListJobs(ctx context.Context, req *workerpb.ListJobsRequest) (*workerpb.ListJobsResponse, error) {
	var out *workerpb.ListJobsResponse
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		r, err := w.ListJobs(ctx, req)
		out = r
		return err
	})
	return out, err
}

// Jobs describes jobs by id, one per id in order: state, handler, key,
// partition, attempts, next run, error history, result, submission and
// finish times. A job nobody knows is UNKNOWN.
func (c *Client) Jobs(ctx context.Context, ids ...string) ([]*workerpb.JobInfo, error) {
	var out []*workerpb.JobInfo
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		r, err := w.GetJobs(ctx, &workerpb.GetJobsRequest{Ids: ids})
		if err == nil {
			out = r.Jobs
		}
		return err
	})
	return out, err
}

// Cancel cancels queued, delayed and retrying jobs, each by the owner of
// its partition, and waits up to wait (0: 10s) for the owners to say how
// each ended: cancelled, already finished, or, for a job further down
// its queue or whose attempt runs, pending. Asking again is harmless: a
// cancel is applied once. A long wait is several calls, each within the
// breakers' deadline.
func (c *Client) Cancel(ctx context.Context, wait time.Duration, ids ...string) ([]*workerpb.CancelResult, error) {
	if wait <= 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	out := make([]*workerpb.CancelResult, len(ids))
	at := map[string][]int{}
	for i, id := range ids {
		at[id] = append(at[id], i)
	}
	ask := ids
	tries := 0
	for {
		slice := max(min(time.Until(deadline), waitSlice), time.Millisecond)
		var got []*workerpb.CancelResult
		asked := tries > 0
		err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			asked = asked || tries > 0
			tries++
			r, err := w.CancelJobs(ctx, &workerpb.CancelJobsRequest{Ids: ask, WaitMs: slice.Milliseconds()})
			if err == nil {
				got = r.Results
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(got) != len(ask) {
			return nil, fmt.Errorf("client: cancel: %d answers for %d jobs", len(got), len(ask))
		}
		var left []string
		for _, r := range got {
			if asked && r.State == workerpb.JobResult_CANCELLED {
				// Applied since an earlier call (or a try on a worker that
				// did not answer in time) asked for it.
				r.Cancelled, r.Message = true, "cancelled"
			}
			for _, i := range at[r.Id] {
				out[i] = r
			}
			if r.Pending {
				left = append(left, r.Id)
			}
		}
		if len(left) == 0 || time.Until(deadline) <= 0 || ctx.Err() != nil {
			return out, nil
		}
		ask = left
	}
}
