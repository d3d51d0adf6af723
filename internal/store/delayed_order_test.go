package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

// delayedDue enqueues a job of key due in 200 ms and waits, on the clock,
// until it is due. Nobody moves it into the stream meanwhile.
func delayedDue(t *testing.T, s *store.Store, id, key string, p int) {
	t.Helper()
	d := job(id, key, p)
	d.NotBefore = time.Now().Add(200 * time.Millisecond).UnixMilli()
	if res, err := s.Enqueue(context.Background(), []store.Job{d}); err != nil || res[0].Err != nil {
		t.Fatalf("enqueue delayed: %+v %v", res, err)
	}
	// The store reads the wall clock, not a clock a test can move: wait on it.
	time.Sleep(time.Until(time.UnixMilli(d.NotBefore + 1)))
}

// TestDueDelayedJobGoesFirst: a job submitted after a delayed job of its
// key became due lands behind it, even when the owner has not moved the
// delayed job into the stream yet.
func TestDueDelayedJobGoesFirst(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 5
	delayedDue(t, s, "late", "alice", p)
	if _, err := s.Enqueue(ctx, []store.Job{job("next", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(read[p]); got != "late next" {
		t.Fatalf("stream holds %q, want \"late next\": the due delayed job first", got)
	}
	// Moved once: the owner's release finds nothing left.
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if n, err := s.ReleaseDue(ctx, p, epoch, time.Now().UnixMilli(), 100); err != nil || n != 0 {
		t.Fatalf("release after the enqueue moved %d jobs (%v), want 0", n, err)
	}
}

// TestDirectCallWaitsForDueDelayedJob: a call may not skip the queue while
// a due delayed job of its partition has not been moved into the stream.
func TestDirectCallWaitsForDueDelayedJob(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 6
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	delayedDue(t, s, "late", "bob", p)
	call := job("call-1", "bob", p)
	if v, err := s.ViewForCall(ctx, call, "donor"); err != nil || v != nil {
		t.Fatalf("view with a due delayed job of the key: %+v %v, want the queue", v, err)
	}
	g := store.NewGuard(call, "donor", nil, false)
	err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{call.ID}, Guard: g})
	if !errors.Is(err, store.ErrBusy) {
		t.Fatalf("direct commit with a due delayed job of the key: %v, want ErrBusy", err)
	}
	if sts, _ := s.StatusesIn(ctx, []string{call.ID}, nil); sts[0].Known {
		t.Fatalf("a refused direct commit wrote: %+v", sts[0])
	}
}

// TestRelayPutsDueDelayedJobFirst: jobs relayed to a partition land behind
// its due delayed jobs too.
func TestRelayPutsDueDelayedJobFirst(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	partitionOf := func(k string) int { return sharding.PartitionOf(k, 8) }
	target := partitionOf("water")
	p := (target + 1) % 8
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	delayedDue(t, s, "late", "water", target)
	err := s.CommitBatch(ctx, p, epoch, &store.Batch{
		Emits: []store.Job{{ID: store.EmittedID("par", 0), Handler: "campaign.credit", Key: "water", Payload: []byte(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay(ctx, s, p, 10, partitionOf); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{target: store.StartID}, 10, 10*time.Millisecond)
	if got, want := ids(read[target]), "late "+store.EmittedID("par", 0); got != want {
		t.Fatalf("target stream holds %q, want %q", got, want)
	}
}
