package store_test

import (
	"context"
	"errors"
	"github.com/corralhq/corral/internal/keys"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// TestHoldKeepsKeyOrder: a job parked for a retry holds its key; the key's
// later jobs wait behind it in order, other keys commit; when the parked
// job is due it runs first with its waiting line, and the hold is lifted.
func TestHoldKeepsKeyOrder(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 3
	epoch, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("k1", "k", p), job("k2", "k", p), job("o1", "other", p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	js := read[p]
	far := time.Now().Add(time.Hour).UnixMilli()
	k1 := js[0]
	k1.Attempt, k1.NotBefore, k1.Errors = 2, far, []string{"attempt 1: later"}
	b := &store.Batch{Done: []string{"o1"}, Acked: []string{js[0].StreamID, js[1].StreamID, js[2].StreamID},
		Keys: []store.KeyPlan{{Key: "k", Park: &k1, Front: []store.Job{js[1]}}}}
	if err := s.CommitBatch(ctx, p, epoch, b); err != nil {
		t.Fatal(err)
	}
	// A later job of the held key is loaded as held and waits at the back.
	if _, err := s.Enqueue(ctx, []store.Job{job("k3", "k", p)}); err != nil {
		t.Fatal(err)
	}
	read, _ = s.Read(ctx, map[int]string{p: js[2].StreamID}, 10, 10*time.Millisecond)
	snap, err := s.Load(ctx, p, read[p], func(string) string { return "donor" })
	if err != nil || !snap.Held["k"] {
		t.Fatalf("key k not held: %+v %v", snap.Held, err)
	}
	b = &store.Batch{Acked: []string{read[p][0].StreamID}, Keys: []store.KeyPlan{{Key: "k", Back: read[p]}}}
	if err := s.CommitBatch(ctx, p, epoch, b); err != nil {
		t.Fatal(err)
	}
	if runs, _ := s.LoadParked(ctx, p, time.Now().UnixMilli(), 10, 10); len(runs) != 0 {
		t.Fatalf("parked job ran before it was due: %+v", runs)
	}
	runs, err := s.LoadParked(ctx, p, far, 10, 10)
	if err != nil || len(runs) != 1 {
		t.Fatalf("due runs %+v %v", runs, err)
	}
	var order []string
	for _, j := range runs[0].Jobs {
		order = append(order, j.ID)
	}
	if len(order) != 3 || order[0] != "k1" || order[1] != "k2" || order[2] != "k3" || runs[0].Jobs[0].Attempt != 2 || len(runs[0].Jobs[0].Errors) != 1 {
		t.Fatalf("line of key k %v (first %+v), want k1 k2 k3 with k1 at attempt 2", order, runs[0].Jobs[0])
	}
	b = &store.Batch{Done: order, Unparked: order, Keys: []store.KeyPlan{{Key: "k", Trim: 2, Next: true}}}
	if err := s.CommitBatch(ctx, p, epoch, b); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Depth(ctx, []int{p}); d[p] != 0 {
		t.Fatalf("depth %d after the line ran, want 0", d[p])
	}
	snap, _ = s.Load(ctx, p, []store.Job{job("k4", "k", p)}, func(string) string { return "donor" })
	if snap.Held["k"] {
		t.Fatal("hold not lifted")
	}
	// The commit script itself refuses a job finished before.
	err = s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"k2"}})
	if !errors.Is(err, store.ErrAlreadyFinished) {
		t.Fatalf("second commit of k2: %v, want ErrAlreadyFinished", err)
	}
	// A refused batch undoes what it claimed before it found k2 finished:
	// fresh stays unfinished, without a TTL, and commits later.
	if _, err := s.Enqueue(ctx, []store.Job{job("fresh", "f", p)}); err != nil {
		t.Fatal(err)
	}
	err = s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"fresh", "k2"}, Attempts: map[string]int{"fresh": 3}})
	if !errors.Is(err, store.ErrAlreadyFinished) {
		t.Fatalf("batch of fresh and k2: %v, want ErrAlreadyFinished", err)
	}
	sts, err := s.StatusesIn(ctx, []string{"fresh"}, nil)
	if err != nil || !sts[0].Known || sts[0].Finished || sts[0].Attempts != 0 {
		t.Fatalf("fresh after the refused batch: %+v %v, want known, unfinished, no attempts", sts, err)
	}
	if ttl := s.Client().TTL(ctx, keys.For(p).Job("fresh")).Val(); ttl >= 0 {
		t.Fatalf("fresh's record has a TTL of %v after the refused batch", ttl)
	}
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"fresh"}}); err != nil {
		t.Fatal(err)
	}
	if sts, _ := s.StatusesIn(ctx, []string{"fresh"}, nil); !sts[0].Finished || sts[0].Attempts != 1 {
		t.Fatalf("fresh after its commit: %+v, want finished at attempt 1", sts)
	}
}

// TestDelayedAndDeadLetters: a delayed job waits outside the stream until
// the owner releases it; a dead letter keeps its history and is replayed
// with fresh attempts.
func TestDelayedAndDeadLetters(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 5
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	due := time.Now().Add(time.Hour).UnixMilli()
	d := job("later", "k", p)
	d.NotBefore = due
	if _, err := s.Enqueue(ctx, []store.Job{d}); err != nil {
		t.Fatal(err)
	}
	if read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond); len(read[p]) != 0 {
		t.Fatalf("delayed job in the stream: %+v", read[p])
	}
	if n, err := s.ReleaseDue(ctx, p, epoch, time.Now().UnixMilli(), 10); err != nil || n != 0 {
		t.Fatalf("released early: %d %v", n, err)
	}
	if _, err := s.ReleaseDue(ctx, p, lease.Grant{Epoch: epoch.Epoch, Nonce: "other"}, due, 10); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("release under another grant of the same epoch: %v", err)
	}
	if n, err := s.ReleaseDue(ctx, p, epoch, due, 10); err != nil || n != 1 {
		t.Fatalf("release when due: %d %v", n, err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if len(read[p]) != 1 || read[p][0].ID != "later" {
		t.Fatalf("released job not in the stream: %+v", read[p])
	}
	j := read[p][0]
	j.Attempt, j.Errors = 3, []string{"attempt 1: a", "attempt 2: b", "attempt 3: c"}
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{Acked: []string{j.StreamID}, Dead: []store.DeadJob{{Job: j, Error: "c"}}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.StatusesIn(ctx, []string{"later"}, nil)
	if err != nil || !st[0].Dead || st[0].Error != "attempt 3: c" || st[0].Attempts != 3 {
		t.Fatalf("status %+v %v", st, err)
	}
	list, next, err := s.ListDead(ctx, 10, "")
	if err != nil || len(list) != 1 || next != "" || len(list[0].Errors) != 3 {
		t.Fatalf("dead letters %+v %q %v", list, next, err)
	}
	if n, err := s.ReplayDead(ctx, []string{"later", "nope"}); err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	read, _ = s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if len(read[p]) != 1 || read[p][0].Attempt != 1 {
		t.Fatalf("replayed job %+v, want one at attempt 1", read[p])
	}
	if all, _ := s.AllDead(ctx); len(all) != 0 {
		t.Fatalf("dead letters left after replay: %v", all)
	}
}
