package client

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/peer"
)

func TestStateNames(t *testing.T) {
	t.Parallel()
	want := "queued delayed retrying running done dead rejected cancelled"
	var got []string
	for _, s := range ListableStates {
		got = append(got, StateName(s))
		if back, err := ParseState(strings.ToUpper(StateName(s))); err != nil || back != s {
			t.Errorf("ParseState(%s) = %v, %v", StateName(s), back, err)
		}
	}
	if strings.Join(got, " ") != want {
		t.Errorf("state names %v, want %s", got, want)
	}
	if _, err := ParseState("finished"); err == nil || !strings.Contains(err.Error(), "queued, delayed") {
		t.Errorf("an unknown state: %v", err)
	}
}

// cancelWorker answers CancelJobs: the first call leaves "slow" pending,
// later calls find it cancelled already.
type cancelWorker struct {
	workerpb.UnimplementedWorkerServer
	mu    sync.Mutex
	calls []*workerpb.CancelJobsRequest
}

func (w *cancelWorker) CancelJobs(_ context.Context, req *workerpb.CancelJobsRequest) (*workerpb.CancelJobsResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, req)
	out := &workerpb.CancelJobsResponse{}
	for _, id := range req.Ids {
		r := &workerpb.CancelResult{Id: id, State: workerpb.JobResult_CANCELLED, Cancelled: true, Message: "cancelled"}
		switch {
		case id == "slow" && len(w.calls) == 1:
			r = &workerpb.CancelResult{Id: id, State: workerpb.JobResult_QUEUED, Pending: true, Message: "not yet"}
		case id == "slow":
			r.Cancelled, r.Message = false, "already cancelled"
		case id == "ran":
			r = &workerpb.CancelResult{Id: id, State: workerpb.JobResult_DONE, Message: "already ran"}
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

// TestCancelWaitsInSlices: a cancel left pending is asked again, for the
// pending jobs only, each call within the breakers' deadline; one found
// cancelled after an earlier call asked for it counts as cancelled.
func TestCancelWaitsInSlices(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &cancelWorker{}
	srv := grpc.NewServer(peer.ServerOptions()...)
	workerpb.RegisterWorkerServer(srv, w)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c := newTestClient(t, discovery.NewStatic(discovery.Member{ID: "w1", Address: lis.Addr().String()}))
	rs, err := c.Cancel(context.Background(), 5*time.Second, "fast", "slow", "ran", "slow")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"fast cancelled", "slow cancelled", "ran already ran", "slow cancelled"} {
		if got := rs[i].Id + " " + rs[i].Message; got != want || strings.HasSuffix(want, "cancelled") != rs[i].Cancelled {
			t.Errorf("answer %d: %q (cancelled %v), want %q", i, got, rs[i].Cancelled, want)
		}
	}
	if len(w.calls) != 2 || strings.Join(w.calls[1].Ids, ",") != "slow,slow" || w.calls[0].WaitMs > waitSlice.Milliseconds() {
		t.Errorf("calls %v", w.calls)
	}
}
