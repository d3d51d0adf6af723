package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// TestSlotsBoundHoldersAndExpire: a handler's semaphore grants at most its
// limit across holders, a release frees slots, a renewal keeps them, and a
// holder that neither renews nor releases loses its slots when their lease
// ends.
func TestSlotsBoundHoldersAndExpire(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	a, err := s.AcquireSlots(ctx, "mail.send", 3, 2, "w1~1", time.Minute)
	if err != nil || len(a) != 2 {
		t.Fatalf("first holder got %v, %v; want 2 slots", a, err)
	}
	b, err := s.AcquireSlots(ctx, "mail.send", 3, 5, "w2~1", 300*time.Millisecond)
	if err != nil || len(b) != 1 {
		t.Fatalf("second holder got %v, %v; want the 1 slot left", b, err)
	}
	if c, _ := s.AcquireSlots(ctx, "mail.send", 3, 1, "w3~1", time.Minute); len(c) != 0 {
		t.Fatalf("a full semaphore granted %v", c)
	}
	if other, _ := s.AcquireSlots(ctx, "mail.other", 3, 3, "w3~2", time.Minute); len(other) != 3 {
		t.Fatalf("another handler's semaphore granted %v, want 3", other)
	}
	if err := s.ReleaseSlots(ctx, "mail.send", a[:1]); err != nil {
		t.Fatal(err)
	}
	if held, _ := s.SlotsHeld(ctx, "mail.send"); held != 2 {
		t.Fatalf("held %d after a release, want 2", held)
	}
	// Renewed, b's slot outlives its first lease.
	time.Sleep(200 * time.Millisecond) // part of b's 300ms lease goes by on purpose; the renewal comes before its end
	if n, err := s.RenewSlots(ctx, "mail.send", b, 300*time.Millisecond); err != nil || n != 1 {
		t.Fatalf("renewed %d, %v; want 1", n, err)
	}
	time.Sleep(200 * time.Millisecond) // past the end of b's first lease on purpose: only the renewal holds the slot
	if held, _ := s.SlotsHeld(ctx, "mail.send"); held != 2 {
		t.Fatalf("held %d after a renewal, want 2", held)
	}
	time.Sleep(200 * time.Millisecond) // b's renewed lease ends: waited out on purpose
	c, err := s.AcquireSlots(ctx, "mail.send", 3, 5, "w3~3", time.Minute)
	if err != nil || len(c) != 2 {
		t.Fatalf("after a lease ended got %v, %v; want 2 slots", c, err)
	}
	if n, _ := s.RenewSlots(ctx, "mail.send", b, time.Minute); n != 0 {
		t.Fatalf("an expired slot was renewed")
	}
}

// TestTokenBucketRate: a bucket starts full with its burst, then grants at
// its rate, says how long until the next token, and takes tokens back.
func TestTokenBucketRate(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	got, _, err := s.TakeTokens(ctx, "mail.send", 50, 10, 25)
	if err != nil || got != 10 {
		t.Fatalf("a new bucket gave %d (%v), want its burst of 10", got, err)
	}
	got, wait, _ := s.TakeTokens(ctx, "mail.send", 50, 10, 5)
	if got != 0 || wait <= 0 || wait > 25*time.Millisecond {
		t.Fatalf("an empty bucket gave %d and says wait %v, want 0 and about 20ms", got, wait)
	}
	start := time.Now()
	total := 0
	for time.Since(start) < time.Second {
		n, _, err := s.TakeTokens(ctx, "mail.send", 50, 10, 3)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		time.Sleep(5 * time.Millisecond) // the pace of the takes in the measured second
	}
	if total < 45 || total > 56 {
		t.Fatalf("took %d tokens in a second at 50/s", total)
	}
	if _, _, err := s.TakeTokens(ctx, "mail.send", 50, 10, -100); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.TakeTokens(ctx, "mail.send", 50, 10, 100); got != 10 {
		t.Fatalf("given back past the burst, the bucket gave %d, want 10", got)
	}
}

// TestFlowSettingsUpdate: settings are merged by update and deleted when
// they control nothing.
func TestFlowSettingsUpdate(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	if _, err := s.UpdateFlow(ctx, "mail.send", func(f *store.FlowSettings) { f.Paused = true }); err != nil {
		t.Fatal(err)
	}
	f, err := s.UpdateFlow(ctx, "mail.send", func(f *store.FlowSettings) { f.Rate, f.Burst = 5, 2 })
	if err != nil || !f.Paused || f.Rate != 5 || f.Burst != 2 {
		t.Fatalf("merged %+v, %v", f, err)
	}
	all, _ := s.FlowSettings(ctx)
	if all["mail.send"] != f || len(all) != 1 {
		t.Fatalf("stored %+v", all)
	}
	s.UpdateFlow(ctx, "mail.send", func(f *store.FlowSettings) { *f = store.FlowSettings{} })
	if all, _ := s.FlowSettings(ctx); len(all) != 0 {
		t.Fatalf("empty settings kept: %+v", all)
	}
}

// TestEnqueueStopsAtMaxDepth: a partition's queue takes jobs up to its
// depth limit and refuses the rest with a QueueFullError naming it; the
// jobs taken are duplicates when sent again, and once its owner works
// some off, the rest go in, in order.
func TestEnqueueStopsAtMaxDepth(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions, cfg.MaxQueueDepth = 8, 5
	s := store.New(rdb, cfg)
	ctx := context.Background()
	p := 2
	var js []store.Job
	for i := range 8 {
		js = append(js, job(fmt.Sprintf("j%d", i), "k", p))
	}
	_, err := s.Enqueue(ctx, js)
	var full *store.QueueFullError
	if !errors.As(err, &full) || !errors.Is(err, store.ErrQueueFull) || full.Partition != p || full.Depth != 5 || full.Max != 5 {
		t.Fatalf("enqueue of 8 into a queue of 5: %v", err)
	}
	res, err := s.Enqueue(ctx, js[:5])
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !r.Duplicate {
			t.Fatalf("job %d sent again: %+v, want a duplicate", i, r)
		}
	}
	epoch, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 3, 10*time.Millisecond)
	b := &store.Batch{Attempts: map[string]int{}}
	for _, j := range read[p] {
		b.Done = append(b.Done, j.ID)
		b.Acked = append(b.Acked, j.StreamID)
	}
	if err := s.CommitBatch(ctx, p, epoch, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, js); err != nil {
		t.Fatalf("after 3 were done: %v", err)
	}
	read, _ = s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if got := ids(read[p]); got != "j3 j4 j5 j6 j7" {
		t.Fatalf("queue %s, want j3 j4 j5 j6 j7", got)
	}
}

// TestWakeParked: waking a handler's parked jobs makes only them due.
func TestWakeParked(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 1
	epoch, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	a, b := job("a1", "a", p), job("b1", "b", p)
	b.Handler = "mail.send"
	if _, err := s.Enqueue(ctx, []store.Job{a, b}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	far := time.Now().Add(time.Hour).UnixMilli()
	pa, pb := read[p][0], read[p][1]
	pa.NotBefore, pb.NotBefore = far, far
	batch := &store.Batch{Acked: []string{pa.StreamID, pb.StreamID},
		Keys: []store.KeyPlan{{Key: "a", Park: &pa}, {Key: "b", Park: &pb}}}
	if err := s.CommitBatch(ctx, p, epoch, batch); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	n, err := s.WakeParked(ctx, p, map[string]bool{"mail.send": true}, now)
	if err != nil || n != 1 {
		t.Fatalf("woke %d, %v; want 1", n, err)
	}
	runs, _ := s.LoadParked(ctx, p, now, 10, 10)
	if len(runs) != 1 || runs[0].Key != "b" {
		t.Fatalf("due after the wake: %+v", runs)
	}
}
