package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/peer"
)

// fakeWorker is a worker's gRPC API on a loopback listener. Each call
// answers with fail's error when fail is set, else as a healthy worker
// would; every request is kept.
type fakeWorker struct {
	workerpb.UnimplementedWorkerServer
	id   string
	addr string

	mu        sync.Mutex
	fail      func(method string) error
	submits   []*workerpb.SubmitRequest
	calls     []*workerpb.CallRequest
	results   int // GetResult calls answered
	doneAfter int // GetResult says done from this call on; 0: never
}

func startWorker(t *testing.T, id string) *fakeWorker {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{id: id, addr: lis.Addr().String()}
	srv := grpc.NewServer(peer.ServerOptions()...)
	workerpb.RegisterWorkerServer(srv, w)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return w
}

// counts returns how many Submit and Call requests w got.
func (w *fakeWorker) counts() (submits, calls int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.submits), len(w.calls)
}

func (w *fakeWorker) member() discovery.Member { return discovery.Member{ID: w.id, Address: w.addr} }

func (w *fakeWorker) failing(method string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return w.fail(method)
	}
	return nil
}

func (w *fakeWorker) setFail(f func(method string) error) {
	w.mu.Lock()
	w.fail = f
	w.mu.Unlock()
}

func (w *fakeWorker) Submit(_ context.Context, req *workerpb.SubmitRequest) (*workerpb.SubmitResponse, error) {
	w.mu.Lock()
	w.submits = append(w.submits, req)
	w.mu.Unlock()
	if err := w.failing("Submit"); err != nil {
		return nil, err
	}
	out := &workerpb.SubmitResponse{}
	for _, j := range req.Jobs {
		out.Results = append(out.Results, &workerpb.SubmitResult{Id: j.Id, Duplicate: true})
	}
	return out, nil
}

func (w *fakeWorker) Call(_ context.Context, req *workerpb.CallRequest) (*workerpb.CallResponse, error) {
	w.mu.Lock()
	w.calls = append(w.calls, req)
	w.mu.Unlock()
	if err := w.failing("Call"); err != nil {
		return nil, err
	}
	return &workerpb.CallResponse{Id: req.Job.Id, ServedBy: w.id,
		Result: &workerpb.JobResult{Id: req.Job.Id, State: workerpb.JobResult_DONE}}, nil
}

func (w *fakeWorker) GetResult(_ context.Context, req *workerpb.GetResultRequest) (*workerpb.GetResultResponse, error) {
	w.mu.Lock()
	w.results++
	st := workerpb.JobResult_QUEUED
	if w.doneAfter > 0 && w.results >= w.doneAfter {
		st = workerpb.JobResult_DONE
	}
	w.mu.Unlock()
	out := &workerpb.GetResultResponse{}
	for _, id := range req.Ids {
		out.Results = append(out.Results, &workerpb.JobResult{Id: id, State: st})
	}
	return out, nil
}

func (w *fakeWorker) Drain(context.Context, *workerpb.DrainRequest) (*workerpb.DrainResponse, error) {
	return &workerpb.DrainResponse{Released: 3}, nil
}

func (w *fakeWorker) Status(context.Context, *workerpb.StatusRequest) (*workerpb.StatusResponse, error) {
	return &workerpb.StatusResponse{Partitions: 8}, nil
}

// newTestClient is New with a static membership instead of Consul, and a
// fast retry.
func newTestClient(t *testing.T, members *discovery.Static) *Client {
	t.Helper()
	pool, err := peer.NewPool(breaker.DefaultConfig(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{members: members, pool: pool, log: slog.Default(),
		retry: RetryConfig{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, For: 5 * time.Second}}
	t.Cleanup(c.Close)
	return c
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// TestSubmitNamesJobsOnceAndMovesOn: a job without an id gets one before
// the first try, and keeps it when the call goes to another worker
// because the first is down or unavailable; the caller's job is not
// changed; a duplicate after a retry is reported as enqueued.
func TestSubmitNamesJobsOnceAndMovesOn(t *testing.T) {
	t.Parallel()
	busy, ok := startWorker(t, "w-busy"), startWorker(t, "w-ok")
	busy.setFail(func(string) error { return status.Error(codes.Unavailable, "redis is loading") })
	down := discovery.Member{ID: "w-down", Address: deadAddr(t)}
	c := newTestClient(t, discovery.NewStatic(down, busy.member(), ok.member()))

	mine := &workerpb.Job{Handler: "donor.donate", Key: "alice", Payload: []byte(`{}`)}
	named := &workerpb.Job{Id: "given", Handler: "donor.donate", Key: "bob", Payload: []byte(`{}`)}
	for round := 0; round < 3; round++ { // each round starts at the next worker
		res, err := c.Submit(context.Background(), []*workerpb.Job{mine, named})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(res) != 2 || res[0].Id == "" || res[1].Id != "given" {
			t.Fatalf("round %d: results %v; want a new id and %q", round, res, "given")
		}
	}
	if mine.Id != "" {
		t.Fatalf("Submit changed the caller's job: id %q", mine.Id)
	}
	var sent []*workerpb.SubmitRequest
	for _, w := range []*fakeWorker{busy, ok} {
		w.mu.Lock()
		sent = append(sent, w.submits...)
		w.mu.Unlock()
	}
	ids := map[string]bool{}
	for _, req := range sent {
		ids[req.Jobs[0].Id] = true
	}
	okN, _ := ok.counts()
	busyN, _ := busy.counts()
	if okN != 3 || busyN == 0 || len(ids) != 3 {
		t.Fatalf("%d submits to the healthy worker, %d to the busy one, %d distinct ids over 3 submissions; want 3, some, 3",
			okN, busyN, len(ids))
	}
}

// TestSubmitRetryReportsEnqueued: a call sent again after a failure may
// find its jobs enqueued by the earlier try; they are reported enqueued,
// not duplicate. A first try's duplicate stays a duplicate.
func TestSubmitRetryReportsEnqueued(t *testing.T) {
	t.Parallel()
	w := startWorker(t, "w")
	c := newTestClient(t, discovery.NewStatic(w.member()))
	jobs := []*workerpb.Job{{Id: "j", Handler: "donor.donate", Key: "k", Payload: []byte(`{}`)}}
	res, err := c.Submit(context.Background(), jobs)
	if err != nil || !res[0].Duplicate {
		t.Fatalf("first try: %v %v; want a duplicate", res, err)
	}
	tries := 0
	w.setFail(func(string) error {
		tries++
		if tries == 1 {
			return status.Error(codes.Unavailable, "reply lost")
		}
		return nil
	})
	res, err = c.Submit(context.Background(), jobs)
	if err != nil || res[0].Duplicate {
		t.Fatalf("after a retry: %v %v; want enqueued, not duplicate", res, err)
	}
}

// TestRequestErrorsAreNotRetried: a worker's answer about the request
// (bad input) is returned at once: no other worker is tried, no retry.
func TestRequestErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	a, b := startWorker(t, "a"), startWorker(t, "b")
	for _, w := range []*fakeWorker{a, b} {
		w.setFail(func(string) error { return status.Error(codes.InvalidArgument, "unknown handler") })
	}
	c := newTestClient(t, discovery.NewStatic(a.member(), b.member()))
	_, err := c.Call(context.Background(), &workerpb.Job{Handler: "nope", Key: "k"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("call: %v; want InvalidArgument", err)
	}
	_, na := a.counts()
	_, nb := b.counts()
	if n := na + nb; n != 1 {
		t.Fatalf("%d calls sent for one bad request, want 1", n)
	}
}

// TestCallCarriesIDAndDeadline: a call without an id gets one, the same on
// every try, and the caller's deadline travels with it.
func TestCallCarriesIDAndDeadline(t *testing.T) {
	t.Parallel()
	w := startWorker(t, "w")
	failed := false
	w.setFail(func(string) error {
		if !failed {
			failed = true
			return status.Error(codes.Unavailable, "owner moving")
		}
		return nil
	})
	c := newTestClient(t, discovery.NewStatic(w.member()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Call(ctx, &workerpb.Job{Handler: "donor.donate", Key: "k", Payload: []byte(`{}`)})
	if err != nil || resp.ServedBy != "w" {
		t.Fatalf("call: %v %v", resp, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.calls) != 2 || w.calls[0].Job.Id == "" || w.calls[0].Job.Id != w.calls[1].Job.Id || resp.Id != w.calls[0].Job.Id {
		t.Fatalf("calls %v, reply id %q; want two tries of one id", w.calls, resp.Id)
	}
	if ms := w.calls[1].TimeoutMs; ms <= 0 || ms > time.Minute.Milliseconds() {
		t.Fatalf("timeout sent: %d ms; want the caller's deadline, at most a minute", ms)
	}
}

// TestNoWorkers: with no healthy worker the client says so, after its
// retries.
func TestNoWorkers(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, discovery.NewStatic())
	c.retry.For = 0
	if _, err := c.Submit(context.Background(), []*workerpb.Job{{Handler: "a.b", Key: "k"}}); !errors.Is(err, ErrNoWorkers) {
		t.Fatalf("submit with no workers: %v; want ErrNoWorkers", err)
	}
}

// TestResultsWaitsForQueuedJobs: Results with a wait asks again while a
// job is queued and returns once it is done.
func TestResultsWaitsForQueuedJobs(t *testing.T) {
	t.Parallel()
	w := startWorker(t, "w")
	c := newTestClient(t, discovery.NewStatic(w.member()))
	rs, err := c.Results(context.Background(), 0, "j")
	if err != nil || rs[0].State != workerpb.JobResult_QUEUED {
		t.Fatalf("without a wait: %v %v; want queued at once", rs, err)
	}
	w.mu.Lock()
	w.doneAfter = 3 // queued on the second call, done on the third
	w.mu.Unlock()
	rs, err = c.Results(context.Background(), time.Minute, "j")
	if err != nil || rs[0].State != workerpb.JobResult_DONE {
		t.Fatalf("with a wait: %v %v; want done", rs, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.results != 3 {
		t.Fatalf("%d GetResult calls, want 3 (one without a wait, two with)", w.results)
	}
}

// TestDrainNamesItsWorker: Drain goes to the worker named, and an unknown
// name is ErrUnknownWorker.
func TestDrainNamesItsWorker(t *testing.T) {
	t.Parallel()
	w := startWorker(t, "w-1")
	c := newTestClient(t, discovery.NewStatic(w.member()))
	if n, err := c.Drain(context.Background(), "w-1"); err != nil || n != 3 {
		t.Fatalf("drain: %d %v; want 3 released", n, err)
	}
	if _, err := c.Drain(context.Background(), "w-2"); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("drain of an unknown worker: %v; want ErrUnknownWorker", err)
	}
}

// TestSubmitterSpreadsCalls: a Submitter reads the partition count once
// and sends each call to the next worker in turn.
func TestSubmitterSpreadsCalls(t *testing.T) {
	t.Parallel()
	a, b := startWorker(t, "a"), startWorker(t, "b")
	c := newTestClient(t, discovery.NewStatic(a.member(), b.member()))
	s, err := c.NewSubmitter(context.Background())
	if err != nil || s.Partitions() != 8 {
		t.Fatalf("submitter: %v, %d partitions; want 8", err, s.Partitions())
	}
	for i := 0; i < 4; i++ {
		if _, err := s.Submit(context.Background(), []*workerpb.Job{{Id: "j", Handler: "a.b", Key: "k"}}); err != nil {
			t.Fatal(err)
		}
	}
	na, _ := a.counts()
	nb, _ := b.counts()
	if na != 2 || nb != 2 {
		t.Fatalf("submits: %d to a, %d to b; want 2 each", na, nb)
	}
}

func TestRetryConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultRetry().Validate(); err != nil {
		t.Fatalf("default retry invalid: %v", err)
	}
	for _, r := range []RetryConfig{{}, {Backoff: time.Second, MaxBackoff: time.Millisecond}, {Backoff: 1, MaxBackoff: 1, For: -1}} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}
