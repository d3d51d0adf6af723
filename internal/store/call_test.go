package store_test

import (
	"context"
	"errors"
	"strings"
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
	commit := func(j store.Job, g *store.Guard, state string) error {
		return s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{j.ID}, Guard: g,
			States:  []store.StateWrite{{Entity: donor, Value: []byte(state)}},
			Results: []store.Result{{JobID: j.ID, Value: []byte("r" + state)}}})
	}
	stateOf := func() string {
		st, _ := s.States(ctx, "donor", []string{"alice"}, func(string) int { return p })
		return string(st[0])
	}

	c1 := job("c1", "alice", p)
	v, err := s.ViewForCall(ctx, c1, "donor")
	if err != nil || v == nil || v.State != nil {
		t.Fatalf("view of an idle partition: %+v %v, want free with no state", v, err)
	}
	if err := commit(c1, v, "1"); err != nil {
		t.Fatal(err)
	}
	if sts, _ := s.StatusesIn(ctx, []string{"c1"}, nil); !sts[0].Finished || string(sts[0].Result) != "r1" || stateOf() != "1" {
		t.Fatalf("after the direct commit: %+v, state %q", sts, stateOf())
	}
	// The same id again is not new: it must take the queue (and dedup).
	if v, _ := s.ViewForCall(ctx, c1, "donor"); v != nil {
		t.Fatal("a used id was let skip the queue")
	}

	// Another key's job queued after the look does not stop it.
	c2 := job("c2", "alice", p)
	v, _ = s.ViewForCall(ctx, c2, "donor")
	if v == nil || string(v.State) != "1" {
		t.Fatalf("view: %+v, want free with state 1", v)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("other", "bob", p)}); err != nil {
		t.Fatal(err)
	}
	if err := commit(c2, v, "2"); err != nil {
		t.Fatalf("commit with bob's job queued: %v", err)
	}
	// The state changed after the look: refused, nothing written.
	c3 := job("c3", "alice", p)
	v, _ = s.ViewForCall(ctx, c3, "donor")
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{States: []store.StateWrite{{Entity: donor, Value: []byte("2b")}}}); err != nil {
		t.Fatal(err)
	}
	if err := commit(c3, v, "3"); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("commit after the state changed: %v, want ErrBusy", err)
	}
	if sts, _ := s.StatusesIn(ctx, []string{"c3"}, nil); sts[0].Known || stateOf() != "2b" {
		t.Fatalf("a refused direct commit wrote: %+v, state %q", sts, stateOf())
	}
	// A job of the key queued after the look: refused.
	v, _ = s.ViewForCall(ctx, c3, "donor")
	if _, err := s.Enqueue(ctx, []store.Job{job("q1", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	if err := commit(c3, v, "3"); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("commit after a job of the key was queued: %v, want ErrBusy", err)
	}
	// And from now on no direct call for alice until it has run.
	if v, _ := s.ViewForCall(ctx, c3, "donor"); v != nil {
		t.Fatal("a call was let pass a queued job of its key")
	}
	// A guard built without a look (from a cached state) checks the same.
	if err := commit(c3, store.NewGuard(c3, "donor", []byte("2b"), true), "3"); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("guard without a look, a job of the key queued: %v, want ErrBusy", err)
	}
	// Keys and ids past 127 bytes (lengths of two varint bytes) are read too.
	long := strings.Repeat("k", 300)
	lj := job(strings.Repeat("i", 200), long, p+1)
	if _, err := s.Enqueue(ctx, []store.Job{lj}); err != nil {
		t.Fatal(err)
	}
	e2 := epoch2(t, s, p+1)
	g := store.NewGuard(job("c9", long, p+1), "donor", nil, false)
	if err := s.CommitBatch(ctx, p+1, e2, &store.Batch{Done: []string{"c9"}, Guard: g}); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("guard for a long key with a job of it queued: %v, want ErrBusy", err)
	}
	g = store.NewGuard(job("c10", long+"x", p+1), "donor", nil, false)
	if err := s.CommitBatch(ctx, p+1, e2, &store.Batch{Done: []string{"c10"}, Guard: g}); err != nil {
		t.Fatalf("guard for another long key: %v", err)
	}
}

func epoch2(t *testing.T, s *store.Store, p int) lease.Grant {
	t.Helper()
	e, err := lease.Claim(context.Background(), s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	return e
}
