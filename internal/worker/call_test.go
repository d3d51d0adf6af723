package worker

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/sharding"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// noGrants owns nothing.
type noGrants struct{}

func (noGrants) activeGrant(int) (lease.Grant, bool) { return lease.Grant{}, false }

// fixedRing is a ring of given members at fixed addresses.
type fixedRing struct {
	ring  *sharding.Ring
	addrs map[string]string
}

func (f fixedRing) current() *sharding.Ring    { return f.ring }
func (f fixedRing) addressOf(id string) string { return f.addrs[id] }

// downPeers answers every call as a dead peer does.
type downPeers struct {
	mu    sync.Mutex
	calls []string
}

func (d *downPeers) Call(_ context.Context, addr string, _ func(context.Context, workerpb.WorkerClient) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, addr)
	return status.Error(codes.Unavailable, "connection refused")
}

// queueIntake accepts every job and reports it done on the first read,
// as if another worker committed it.
type queueIntake struct {
	mu        sync.Mutex
	submitted []*workerpb.Job
}

func (q *queueIntake) submit(_ context.Context, req *workerpb.SubmitRequest) (*workerpb.SubmitResponse, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	resp := &workerpb.SubmitResponse{}
	for _, j := range req.Jobs {
		q.submitted = append(q.submitted, j)
		resp.Results = append(resp.Results, &workerpb.SubmitResult{Id: j.Id})
	}
	return resp, nil
}

func (q *queueIntake) results(_ context.Context, ids, _ []string, _ time.Duration) (*workerpb.GetResultResponse, error) {
	resp := &workerpb.GetResultResponse{}
	for _, id := range ids {
		resp.Results = append(resp.Results, &workerpb.JobResult{Id: id, State: workerpb.JobResult_DONE, Result: []byte(`"ok"`)})
	}
	return resp, nil
}

func (q *queueIntake) validate(*workerpb.Job, string, map[string]host.HandlerInfo) error { return nil }
func (q *queueIntake) admit(*workerpb.Job, string, int, map[string]host.HandlerInfo) error {
	return nil
}
func (q *queueIntake) handlers() map[string]host.HandlerInfo { return nil }

// TestCallFallsBackWhenOwnerIsDown: a Call for a partition whose owner
// does not answer is enqueued here (the durable path) under the id it was
// given, and its result is returned.
func TestCallFallsBackWhenOwnerIsDown(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.ID = "self"
	ring, err := sharding.NewRing(cfg.Ring, []string{"other"})
	if err != nil {
		t.Fatal(err)
	}
	peers, intake := &downPeers{}, &queueIntake{}
	rt := &callRouter{cfg: cfg, log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), grants: noGrants{},
		view: fixedRing{ring: ring, addrs: map[string]string{"other": "127.0.0.1:1"}}, peers: peers,
		budget: breaker.DefaultBudget(), intake: intake, metrics: &workerMetrics{m: metrics.NewWorker("self", metrics.Source{})}}
	resp, err := rt.call(context.Background(), &workerpb.CallRequest{TimeoutMs: 5000,
		Job: &workerpb.Job{Id: "c1", Handler: "donor.donate", Key: "alice", Payload: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Durable || resp.Id != "c1" || resp.Result.GetState() != workerpb.JobResult_DONE || string(resp.Result.GetResult()) != `"ok"` {
		t.Fatalf("call answered %+v, want the durable path's result of c1", resp)
	}
	if len(peers.calls) != 1 || peers.calls[0] != "127.0.0.1:1" {
		t.Fatalf("owner called at %v, want once at 127.0.0.1:1", peers.calls)
	}
	if len(intake.submitted) != 1 || intake.submitted[0].Id != "c1" {
		t.Fatalf("enqueued %v, want c1 once", intake.submitted)
	}
	want := "# HELP corral_calls_total Synchronous calls this worker took from a client, per path: direct (it owns the key), forwarded (to the owner), fallback (the durable queue).\n# TYPE corral_calls_total counter\ncorral_calls_total{path=\"fallback\"} 1\n"
	if err := testutil.GatherAndCompare(rt.metrics.m.Registry(), strings.NewReader(want), "corral_calls_total"); err != nil {
		t.Fatalf("the fallback call was not counted as one: %v", err)
	}
}
