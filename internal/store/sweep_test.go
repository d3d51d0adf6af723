package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// TestSweepDropsFinishedRecords: the records kept for the done retention
// go once their finished log entry is that old, and no earlier; a record
// with a result kept longer keeps its own time to live; a job finished
// again later is dropped with its later entry, and one waiting again after
// a replay is not dropped at all.
func TestSweepDropsFinishedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions = 4
	const done = 2 * time.Second
	cfg.DoneRetention, cfg.ResultRetention = done, time.Hour
	s := store.New(rdb, cfg)
	if err := s.EnsurePartitions(ctx); err != nil {
		t.Fatal(err)
	}
	p := 1
	k := keys.For(p)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	commit := func(b *store.Batch) {
		t.Helper()
		read, err := s.Read(ctx, map[int]string{p: store.StartID}, 100, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		b.Jobs, b.Attempts = read[p], map[string]int{}
		for _, j := range read[p] {
			b.Acked = append(b.Acked, j.StreamID)
		}
		if err := s.CommitBatch(ctx, p, grant, b); err != nil {
			t.Fatal(err)
		}
	}
	var jobs []store.Job
	for _, id := range []string{"plain", "res", "rej", "again", "waiting"} {
		jobs = append(jobs, job(id, id, p))
	}
	if _, err := s.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	commit(&store.Batch{Done: []string{"plain", "res", "again", "waiting"},
		Results:  []store.Result{{JobID: "res", Value: []byte(`{"total":1}`)}},
		Rejected: []store.Rejection{{JobID: "rej", Attempts: 1, Reason: "no"}}})
	first := time.Now()
	for id, want := range map[string]time.Duration{"plain": -1, "rej": -1, "again": -1, "res": time.Hour} {
		ttl := rdb.TTL(ctx, k.Job(id)).Val()
		if want < 0 && ttl != -1 || want > 0 && (ttl <= want-time.Minute || ttl > want) {
			t.Fatalf("record of %s: TTL %v, want %v", id, ttl, want)
		}
	}
	// "again" and "waiting" are replayed as dead letters are (the record
	// holds its content hash alone again); "again" finishes again, a
	// second later than the others, which is what tells them apart.
	for _, id := range []string{"again", "waiting"} {
		h := rdb.HGet(ctx, k.Job(id), "h").Val()
		rdb.Del(ctx, k.Job(id))
		rdb.HSet(ctx, k.Job(id), "h", h)
	}
	got, err := s.SweepFinished(ctx, []int{p})
	if err != nil || got[p].Records != 0 {
		t.Fatalf("a sweep right after the commit: %+v %v, want nothing dropped", got, err)
	}
	time.Sleep(done / 2) // the second finish's entry is this much younger
	if _, err := s.Enqueue(ctx, []store.Job{job("next", "next", p)}); err != nil {
		t.Fatal(err)
	}
	commit(&store.Batch{Done: []string{"again", "next"}})
	second := time.Now()

	exists := func(id string) bool { return rdb.Exists(ctx, k.Job(id)).Val() == 1 }
	sweepUntilGone := func(id string) time.Time {
		t.Helper()
		deadline := time.Now().Add(10 * done)
		for exists(id) {
			if time.Now().After(deadline) {
				t.Fatalf("the record of %s is still there %v after its finish", id, 10*done)
			}
			if _, err := s.SweepFinished(ctx, []int{p}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Now()
	}
	gone := sweepUntilGone("plain")
	if gone.Sub(first) < done {
		t.Fatalf("plain dropped %v after its finish, before the done retention", gone.Sub(first))
	}
	if exists("rej") {
		t.Fatal("rej, finished with plain, was not dropped with it")
	}
	if !exists("again") || !exists("res") || !exists("waiting") {
		t.Fatalf("dropped with the first entry: again %v, res %v, waiting %v (want all kept)", exists("again"), exists("res"), exists("waiting"))
	}
	gone = sweepUntilGone("again")
	if gone.Sub(second) < done {
		t.Fatalf("again dropped %v after its second finish, before the done retention", gone.Sub(second))
	}
	if exists("next") {
		t.Fatal("next, finished with again, was not dropped with it")
	}
	if !exists("res") || !exists("waiting") {
		t.Fatalf("res kept %v, waiting kept %v: want both kept", exists("res"), exists("waiting"))
	}
	if st, err := s.StatusesIn(ctx, []string{"res"}, nil); err != nil || !st[0].Finished {
		t.Fatalf("res after the sweeps: %+v %v", st, err)
	}
}

// TestSweepAfterResultRetentionChange: a record with a result finished
// while results were kept as long as the dedup window has no time to live;
// once results are kept longer, the sweep still drops it (else nothing
// would), but once they are kept for ever it keeps it.
func TestSweepAfterResultRetentionChange(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		result   time.Duration
		wantKept bool
	}{{"kept longer", time.Hour, false}, {"kept for ever", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := testenv.StartRedis(t).Client(t)
			cfg := store.DefaultConfig()
			cfg.Partitions = 4
			cfg.DoneRetention, cfg.ResultRetention = time.Second, time.Second
			s := store.New(rdb, cfg)
			if err := s.EnsurePartitions(ctx); err != nil {
				t.Fatal(err)
			}
			p := 2
			grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Enqueue(ctx, []store.Job{job("res", "a", p), job("plain", "b", p)}); err != nil {
				t.Fatal(err)
			}
			read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, time.Millisecond)
			if err != nil || len(read[p]) != 2 {
				t.Fatalf("read %d jobs: %v", len(read[p]), err)
			}
			b := &store.Batch{Jobs: read[p], Attempts: map[string]int{}, Done: []string{"res", "plain"},
				Results: []store.Result{{JobID: "res", Value: []byte(`{"total":1}`)}}}
			for _, j := range read[p] {
				b.Acked = append(b.Acked, j.StreamID)
			}
			if err := s.CommitBatch(ctx, p, grant, b); err != nil {
				t.Fatal(err)
			}
			k := keys.For(p)
			if ttl := rdb.TTL(ctx, k.Job("res")).Val(); ttl != -1 {
				t.Fatalf("res's TTL %v, want none", ttl)
			}
			cfg.ResultRetention = tc.result
			later := store.New(rdb, cfg)
			deadline := time.Now().Add(20 * time.Second)
			for rdb.Exists(ctx, k.Job("plain")).Val() == 1 {
				if time.Now().After(deadline) {
					t.Fatal("plain was never swept")
				}
				if _, err := later.SweepFinished(ctx, []int{p}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if kept := rdb.Exists(ctx, k.Job("res")).Val() == 1; kept != tc.wantKept {
				t.Fatalf("res kept %v, want %v", kept, tc.wantKept)
			}
		})
	}
}
