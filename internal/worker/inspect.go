package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inspector serves ListJobs and GetJobs: what Redis knows of jobs, and
// which of them run now, which only their owners know. A job in a batch
// in flight is still queued or retrying in Redis; the inspector asks
// every member for the jobs it runs and shows those as RUNNING. A member
// that cannot be asked is named in the answer, and its jobs show as
// Redis has them.
type inspector struct {
	cfg   Config
	log   *slog.Logger
	store interface {
		ListJobs(ctx context.Context, q store.ListQuery) ([]store.JobInfo, string, error)
		Describe(ctx context.Context, ids []string) ([]store.JobInfo, error)
	}
	running  *running
	registry interface {
		Healthy(ctx context.Context) ([]discovery.Member, error)
	}
	peers peerCaller
}

// ListJobs pages through the jobs in one state (see the proto).
func (a *API) ListJobs(ctx context.Context, req *workerpb.ListJobsRequest) (*workerpb.ListJobsResponse, error) {
	return a.inspect.list(ctx, req)
}

// GetJobs describes jobs by id.
func (a *API) GetJobs(ctx context.Context, req *workerpb.GetJobsRequest) (*workerpb.GetJobsResponse, error) {
	return a.inspect.get(ctx, req)
}

// storeStates maps the API's states to the store's; RUNNING has none.
var storeStates = map[workerpb.JobResult_State]store.JobState{
	workerpb.JobResult_QUEUED: store.StateQueued, workerpb.JobResult_DELAYED: store.StateDelayed,
	workerpb.JobResult_RETRYING: store.StateRetrying, workerpb.JobResult_DONE: store.StateDone,
	workerpb.JobResult_DEAD: store.StateDead, workerpb.JobResult_REJECTED: store.StateRejected,
	workerpb.JobResult_CANCELLED: store.StateCancelled,
}

var apiStates = func() map[store.JobState]workerpb.JobResult_State {
	m := map[store.JobState]workerpb.JobResult_State{store.StateUnknown: workerpb.JobResult_UNKNOWN}
	for a, s := range storeStates {
		m[s] = a
	}
	return m
}()

func (in *inspector) list(ctx context.Context, req *workerpb.ListJobsRequest) (*workerpb.ListJobsResponse, error) {
	if req.Key != "" {
		if err := validateKey(req.Key); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	part := -1
	if req.Partition != nil {
		part = int(*req.Partition)
		if part < 0 || part >= in.cfg.routing().Partitions() {
			return nil, status.Errorf(codes.InvalidArgument, "no partition %d: the cluster has %d (0 to %d)", part, in.cfg.routing().Partitions(), in.cfg.routing().Partitions()-1)
		}
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = 100
	}
	if req.State == workerpb.JobResult_RUNNING {
		return in.listRunning(ctx, req, part, limit)
	}
	st, ok := storeStates[req.State]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "cannot list jobs in state %v: give queued, delayed, retrying, running, done, dead, rejected or cancelled", req.State)
	}
	jobs, next, err := in.store.ListJobs(ctx, store.ListQuery{State: st, Handler: req.Handler, Key: req.Key, Partition: part,
		Limit: limit, After: req.After})
	if errors.Is(err, store.ErrBadCursor) {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	resp := &workerpb.ListJobsResponse{Next: next, Jobs: make([]*workerpb.JobInfo, len(jobs))}
	for i := range jobs {
		resp.Jobs[i] = jobInfo(&jobs[i])
	}
	if st == store.StateQueued || st == store.StateRetrying {
		resp.Unreachable = in.markRunning(ctx, resp.Jobs)
	}
	return resp, nil
}

// listRunning lists the jobs of the batches in flight: this worker's
// when local is set, else every member's, a page at a time by partition
// and id.
func (in *inspector) listRunning(ctx context.Context, req *workerpb.ListJobsRequest, part, limit int) (*workerpb.ListJobsResponse, error) {
	match := func(j *workerpb.JobInfo) bool {
		return (part < 0 || int(j.Partition) == part) && (req.Handler == "" || j.Handler == req.Handler) &&
			(req.Key == "" || j.Key == req.Key)
	}
	var all []*workerpb.JobInfo
	resp := &workerpb.ListJobsResponse{}
	if req.Local {
		all = in.localRunning()
	} else {
		all, resp.Unreachable = in.runningEverywhere(ctx)
	}
	var afterP int
	var afterID string
	if req.After != "" {
		p, id, ok := strings.Cut(req.After, ",")
		n, err := strconv.Atoi(p)
		if !ok || err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%v %q", store.ErrBadCursor, req.After)
		}
		afterP, afterID = n, id
	}
	for _, j := range all {
		if req.After != "" && (int(j.Partition) < afterP || int(j.Partition) == afterP && j.Id <= afterID) {
			continue
		}
		if !match(j) {
			continue
		}
		if len(resp.Jobs) == limit && !req.Local {
			last := resp.Jobs[limit-1]
			resp.Next = strconv.Itoa(int(last.Partition)) + "," + last.Id
			break
		}
		resp.Jobs = append(resp.Jobs, j)
	}
	return resp, nil
}

// localRunning is what this worker runs now, by partition and id.
func (in *inspector) localRunning() []*workerpb.JobInfo {
	js := in.running.jobs(nil)
	out := make([]*workerpb.JobInfo, len(js))
	for i, j := range js {
		out[i] = &workerpb.JobInfo{Id: j.ID, State: workerpb.JobResult_RUNNING, Handler: j.Handler, Key: j.Key,
			Partition: int32(j.Partition), Attempts: int32(j.Attempt), Errors: j.Errors, Payload: j.Payload,
			SubmittedAtMs: j.SubmittedAt, Worker: in.cfg.ID, Note: fmt.Sprintf("attempt %d runs on %s", j.Attempt, in.cfg.ID)}
	}
	return out
}

// runningEverywhere asks every healthy member, through its breaker, what
// it runs now; unreachable names the members that could not say.
func (in *inspector) runningEverywhere(ctx context.Context) (jobs []*workerpb.JobInfo, unreachable []string) {
	members, err := in.registry.Healthy(ctx)
	if err != nil {
		return in.localRunning(), []string{"members unknown: " + err.Error()}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	self := false
	for _, m := range members {
		if m.ID == in.cfg.ID {
			self = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got []*workerpb.JobInfo
			err := in.peers.Call(ctx, m.Address, func(ctx context.Context, c workerpb.WorkerClient) error {
				r, err := c.ListJobs(ctx, &workerpb.ListJobsRequest{State: workerpb.JobResult_RUNNING, Local: true})
				if err == nil {
					got = r.Jobs
				}
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				unreachable = append(unreachable, m.ID+": "+status.Convert(err).Message())
				return
			}
			jobs = append(jobs, got...)
		}()
	}
	wg.Wait()
	if self || len(members) == 0 {
		jobs = append(jobs, in.localRunning()...)
	}
	sort.Slice(jobs, func(i, j int) bool {
		if jobs[i].Partition != jobs[j].Partition {
			return jobs[i].Partition < jobs[j].Partition
		}
		return jobs[i].Id < jobs[j].Id
	})
	sort.Strings(unreachable)
	return jobs, unreachable
}

// markRunning shows as RUNNING the jobs of infos that a member runs now,
// and returns the members that could not be asked.
func (in *inspector) markRunning(ctx context.Context, infos []*workerpb.JobInfo) []string {
	pending := false
	for _, j := range infos {
		if !finishedState(j.State) {
			pending = true
		}
	}
	if !pending {
		return nil
	}
	run, unreachable := in.runningEverywhere(ctx)
	byID := make(map[string]*workerpb.JobInfo, len(run))
	for _, r := range run {
		byID[r.Id] = r
	}
	for _, j := range infos {
		r, ok := byID[j.Id]
		if !ok || j.Partition >= 0 && r.Partition != j.Partition || j.State == workerpb.JobResult_DELAYED {
			continue
		}
		j.State, j.Worker, j.Attempts = workerpb.JobResult_RUNNING, r.Worker, r.Attempts
		j.Note = r.Note
		if j.Handler == "" {
			j.Handler, j.Key, j.Payload = r.Handler, r.Key, r.Payload
		}
	}
	return unreachable
}

func (in *inspector) get(ctx context.Context, req *workerpb.GetJobsRequest) (*workerpb.GetJobsResponse, error) {
	for _, id := range req.Ids {
		if err := validateResultID(id); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "job id %q: %v", id, err)
		}
	}
	infos, err := in.store.Describe(ctx, req.Ids)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	resp := &workerpb.GetJobsResponse{Jobs: make([]*workerpb.JobInfo, len(infos))}
	for i := range infos {
		resp.Jobs[i] = jobInfo(&infos[i])
	}
	if un := in.markRunning(ctx, resp.Jobs); len(un) > 0 {
		for _, j := range resp.Jobs {
			if !finishedState(j.State) && j.State != workerpb.JobResult_UNKNOWN {
				j.Note = strings.TrimPrefix(j.Note+"; ", "; ") + "not known whether it runs now: " + strings.Join(un, ", ")
			}
		}
	}
	return resp, nil
}

func finishedState(s workerpb.JobResult_State) bool {
	return s == workerpb.JobResult_DONE || s == workerpb.JobResult_DEAD || s == workerpb.JobResult_REJECTED ||
		s == workerpb.JobResult_CANCELLED
}

// jobInfo is the API's view of what the store knows of a job.
func jobInfo(j *store.JobInfo) *workerpb.JobInfo {
	return &workerpb.JobInfo{Id: j.ID, State: apiStates[j.State], Handler: j.Handler, Key: j.Key, Partition: int32(j.Partition),
		Attempts: int32(j.Attempts), NextRunMs: j.NextRun, Errors: j.Errors, Error: j.Error, Result: j.Result, Payload: j.Payload,
		SubmittedAtMs: j.SubmittedAt, FinishedAtMs: j.FinishedAt, Note: j.Note, CancelRequested: j.CancelRequested}
}
