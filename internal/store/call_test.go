package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// TestDirectCallGuard: a job may skip the queue only while nothing of its
// key is queued and its id is new, and its commit is refused, with nothing
// written, when the partition changed after it looked.
func TestDirectCallGuard(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 3
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	donor := store.EntityRef{Type: "donor", Key: "alice"}
	commit := func(j store.Job, v store.CallView, state string) error {
		return s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{j.ID}, Guard: v.Guard,
			States:  []store.StateWrite{{Entity: donor, Value: []byte(state)}},
			Results: []store.Result{{JobID: j.ID, Value: []byte("r" + state)}}})
	}
	stateOf := func() string {
		st, _ := s.States(ctx, "donor", []string{"alice"}, func(string) int { return p })
		return string(st[0])
	}

	c1 := job("c1", "alice", p)
	v, err := s.ViewForCall(ctx, c1, "donor")
	if err != nil || !v.Free || v.State != nil {
		t.Fatalf("view of an idle partition: %+v %v, want free with no state", v, err)
	}
	if err := commit(c1, v, "1"); err != nil {
		t.Fatal(err)
	}
	if sts, _ := s.Statuses(ctx, []string{"c1"}); !sts[0].Finished || string(sts[0].Result) != "r1" || stateOf() != "1" {
		t.Fatalf("after the direct commit: %+v, state %q", sts, stateOf())
	}
	// The same id again is not new: it must take the queue (and dedup).
	if v, _ := s.ViewForCall(ctx, c1, "donor"); v.Free {
		t.Fatal("a used id was let skip the queue")
	}

	// Another key's job queued after the look: refused, nothing written.
	c2 := job("c2", "alice", p)
	v, _ = s.ViewForCall(ctx, c2, "donor")
	if !v.Free || string(v.State) != "1" {
		t.Fatalf("view: %+v, want free with state 1", v)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("other", "bob", p)}); err != nil {
		t.Fatal(err)
	}
	if err := commit(c2, v, "2"); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("commit after the stream grew: %v, want ErrBusy", err)
	}
	if sts, _ := s.Statuses(ctx, []string{"c2"}); sts[0].Known || stateOf() != "1" {
		t.Fatalf("a refused direct commit wrote: %+v, state %q", sts, stateOf())
	}
	// Other keys queued before the look do not stop it.
	v, _ = s.ViewForCall(ctx, c2, "donor")
	if !v.Free {
		t.Fatal("bob's queued job stopped a call for alice")
	}
	// The state changed after the look: refused.
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{States: []store.StateWrite{{Entity: donor, Value: []byte("1b")}}}); err != nil {
		t.Fatal(err)
	}
	if err := commit(c2, v, "2"); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("commit after the state changed: %v, want ErrBusy", err)
	}

	// A job of the key itself queued: no direct call.
	if _, err := s.Enqueue(ctx, []store.Job{job("q1", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.ViewForCall(ctx, c2, "donor"); v.Free {
		t.Fatal("a call was let pass a queued job of its key")
	}
}
