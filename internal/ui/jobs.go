package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Job is a job as the jobs page shows it: what 'coordinator jobs show'
// prints, with the payload's size instead of the payload.
type Job struct {
	ID              string          `json:"id"`
	State           string          `json:"state"`
	Handler         string          `json:"handler"`
	Key             string          `json:"key"`
	Partition       int32           `json:"partition"` // -1 when unknown
	Attempts        int32           `json:"attempts"`
	NextRunMs       int64           `json:"next_run_ms,omitempty"`
	Errors          []string        `json:"errors"`
	Error           string          `json:"error,omitempty"`
	Result          json.RawMessage `json:"result,omitempty"`
	PayloadBytes    int             `json:"payload_bytes"`
	SubmittedAtMs   int64           `json:"submitted_at_ms,omitempty"`
	FinishedAtMs    int64           `json:"finished_at_ms,omitempty"`
	Note            string          `json:"note,omitempty"`
	Worker          string          `json:"worker,omitempty"`
	CancelRequested bool            `json:"cancel_requested,omitempty"`
}

func stateName(s workerpb.JobResult_State) string { return strings.ToLower(s.String()) }

func jobOf(j *workerpb.JobInfo) Job {
	out := Job{ID: j.Id, State: stateName(j.State), Handler: j.Handler, Key: j.Key, Partition: j.Partition,
		Attempts: j.Attempts, NextRunMs: j.NextRunMs, Errors: j.Errors, Error: j.Error, PayloadBytes: len(j.Payload),
		SubmittedAtMs: j.SubmittedAtMs, FinishedAtMs: j.FinishedAtMs, Note: j.Note, Worker: j.Worker,
		CancelRequested: j.CancelRequested}
	if out.Errors == nil {
		out.Errors = []string{}
	}
	if len(j.Result) > 0 {
		if json.Valid(j.Result) {
			out.Result = j.Result
		} else {
			out.Result, _ = json.Marshal(string(j.Result))
		}
	}
	return out
}

// jobStates are the states the jobs page lists, as ListJobs names them.
var jobStates = map[string]workerpb.JobResult_State{
	"queued": workerpb.JobResult_QUEUED, "delayed": workerpb.JobResult_DELAYED, "retrying": workerpb.JobResult_RETRYING,
	"running": workerpb.JobResult_RUNNING, "done": workerpb.JobResult_DONE, "dead": workerpb.JobResult_DEAD,
	"rejected": workerpb.JobResult_REJECTED, "cancelled": workerpb.JobResult_CANCELLED,
}

// listJobs answers GET api/jobs?state=S[&handler=H][&key=K][&limit=N][&after=C].
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, ok := jobStates[q.Get("state")]
	if !ok {
		http.Error(w, "state must be one of queued, delayed, retrying, running, done, dead, rejected, cancelled", http.StatusBadRequest)
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			http.Error(w, "limit must be 1 to 500", http.StatusBadRequest)
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp, err := s.src.ListJobs(ctx, &workerpb.ListJobsRequest{State: st, Handler: q.Get("handler"), Key: q.Get("key"),
		Limit: int32(limit), After: q.Get("after")})
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	jobs := make([]Job, 0, len(resp.Jobs))
	for _, j := range resp.Jobs {
		jobs = append(jobs, jobOf(j))
	}
	unreachable := resp.Unreachable
	if unreachable == nil {
		unreachable = []string{}
	}
	writeJSON(w, map[string]any{"jobs": jobs, "next": resp.Next, "unreachable": unreachable})
}

// showJob answers GET api/job?id=ID: the job and the jobs it emitted
// that are known.
func (s *Server) showJob(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		http.Error(w, "id is required", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	js, err := s.src.GetJobs(ctx, []string{id})
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	if len(js) != 1 || js[0].State == workerpb.JobResult_UNKNOWN || js[0].State == workerpb.JobResult_STATE_UNSPECIFIED {
		msg := "no job " + id + " (never submitted, or its record expired)"
		if len(js) == 1 && js[0].Note != "" {
			msg = "job " + id + ": " + js[0].Note
		}
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	emitted, err := s.src.Emitted(ctx, id)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	out := make([]Job, len(emitted))
	for i, j := range emitted {
		out[i] = jobOf(j)
	}
	writeJSON(w, map[string]any{"job": jobOf(js[0]), "emitted": out})
}

// showDead answers GET api/dead/show?id=ID.
func (s *Server) showDead(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		http.Error(w, "id is required", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	d, err := s.src.DeadLetter(ctx, id)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	if d == nil {
		http.Error(w, "no dead letter "+id, http.StatusNotFound)
		return
	}
	writeJSON(w, d)
}

// httpStatus answers a request the worker found wrong with 400, and
// anything else (Redis, a peer) with 502.
func httpStatus(err error) int {
	if status.Code(err) == codes.InvalidArgument {
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}
