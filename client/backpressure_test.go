package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/peer"
)

func queueFullErr() error {
	st, _ := status.New(codes.ResourceExhausted, "queue full: partition 3 holds 10 jobs").WithDetails(
		&errdetails.ErrorInfo{Reason: peer.QueueFullReason, Domain: "corral", Metadata: map[string]string{"partition": "3", "depth": "10", "max": "10"}})
	return st.Err()
}

// TestSubmitBacksOffAtFullQueue: a full queue's refusal is sent again to
// the same worker, with the same ids, after a backoff, until it is taken;
// the caller hears of each refusal; its breaker stays closed.
func TestSubmitBacksOffAtFullQueue(t *testing.T) {
	t.Parallel()
	w := startWorker(t, "w1")
	refusals := 0
	w.setFail(func(string) error {
		if refusals < 3 {
			refusals++
			return queueFullErr()
		}
		return nil
	})
	c := newTestClient(t, discovery.NewStatic(w.member()))
	c.retry.FullFor = 5 * time.Second
	var heard []QueueFull
	c.onFull = func(q QueueFull) { heard = append(heard, q) }
	res, err := c.Submit(context.Background(), []*workerpb.Job{{Handler: "h.a", Key: "k", Payload: []byte("{}")}})
	if err != nil || len(res) != 1 {
		t.Fatalf("submit: %v %v", res, err)
	}
	subs, _ := w.counts()
	if subs != 4 {
		t.Fatalf("%d submits, want 4", subs)
	}
	first := w.submits[0].Jobs[0].Id
	for _, s := range w.submits {
		if s.Jobs[0].Id != first || first == "" {
			t.Fatalf("ids changed between tries: %q then %q", first, s.Jobs[0].Id)
		}
	}
	if len(heard) != 3 || heard[0] != (QueueFull{Partition: 3, Depth: 10, Max: 10}) {
		t.Fatalf("heard %+v", heard)
	}
}

// TestSubmitGivesUpAtFullQueue: past FullFor the refusal is returned as
// ErrQueueFull; with FullFor 0 at once; a ResourceExhausted that is not a
// full queue is not taken for one.
func TestSubmitGivesUpAtFullQueue(t *testing.T) {
	t.Parallel()
	w := startWorker(t, "w1")
	w.setFail(func(string) error { return queueFullErr() })
	c := newTestClient(t, discovery.NewStatic(w.member()))
	c.retry.FullFor = 50 * time.Millisecond
	_, err := c.Submit(context.Background(), []*workerpb.Job{{Handler: "h.a", Key: "k", Payload: []byte("{}")}})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err %v, want ErrQueueFull", err)
	}
	if q, ok := IsQueueFull(err); !ok || q.Partition != 3 {
		t.Fatalf("IsQueueFull(%v) = %+v %v", err, q, ok)
	}
	c.retry.FullFor = 0
	before, _ := w.counts()
	c.Submit(context.Background(), []*workerpb.Job{{Handler: "h.a", Key: "k", Payload: []byte("{}")}})
	if after, _ := w.counts(); after != before+1 {
		t.Fatalf("FullFor 0 sent %d times", after-before)
	}
	if _, ok := IsQueueFull(status.Error(codes.ResourceExhausted, "grpc: received message larger than max")); ok {
		t.Fatal("a message over the size limit taken for a full queue")
	}
}
