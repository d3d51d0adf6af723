package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// sweepFixture is a store with the given retentions on a Redis of its
// own, and a grant on partition p to commit with.
type sweepFixture struct {
	t     *testing.T
	rdb   *redis.Client
	cfg   store.Config
	s     *store.Store
	p     int
	grant lease.Grant
}

func newSweepFixture(t *testing.T, done, result time.Duration) *sweepFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	f := &sweepFixture{t: t, rdb: testenv.StartRedis(t).Client(t), cfg: store.DefaultConfig(), p: 1}
	f.cfg.Partitions = 4
	f.cfg.DoneRetention, f.cfg.ResultRetention = done, result
	f.s = store.New(f.rdb, f.cfg)
	ctx := context.Background()
	if err := f.s.EnsurePartitions(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.grant, err = lease.Claim(ctx, f.rdb, f.p, "w~1", ""); err != nil {
		t.Fatal(err)
	}
	return f
}

// commit enqueues jobs of these ids (each its own key), then commits b
// with every job queued in the partition read, acked.
func (f *sweepFixture) commit(ids []string, b *store.Batch) {
	f.t.Helper()
	ctx := context.Background()
	var jobs []store.Job
	for _, id := range ids {
		jobs = append(jobs, job(id, id, f.p))
	}
	if _, err := f.s.Enqueue(ctx, jobs); err != nil {
		f.t.Fatal(err)
	}
	read, err := f.s.Read(ctx, map[int]string{f.p: store.StartID}, 100, time.Millisecond)
	if err != nil {
		f.t.Fatal(err)
	}
	b.Jobs, b.Attempts = read[f.p], map[string]int{}
	for _, j := range read[f.p] {
		b.Acked = append(b.Acked, j.StreamID)
	}
	if err := f.s.CommitBatch(ctx, f.p, f.grant, b); err != nil {
		f.t.Fatal(err)
	}
}

func (f *sweepFixture) exists(id string) bool {
	return f.rdb.Exists(context.Background(), keys.For(f.p).Job(id)).Val() == 1
}

// sweepUntilGone sweeps with s until id's record is gone, and says when.
func (f *sweepFixture) sweepUntilGone(s *store.Store, id string) time.Time {
	f.t.Helper()
	var gone time.Time
	testenv.Eventually(f.t, 10*f.cfg.DoneRetention, func() error {
		if _, err := s.SweepFinished(context.Background(), []int{f.p}); err != nil {
			return err
		}
		if f.exists(id) {
			return fmt.Errorf("the record of %s is still there", id)
		}
		gone = time.Now()
		return nil
	})
	return gone
}

// TestSweepDropsFinishedRecords: the records kept for the done retention
// go once their finished log entry is that old, and no earlier; a record
// with a result kept longer keeps its own time to live; a job finished
// again later is dropped with its later entry, and one waiting again after
// a replay is not dropped at all.
func TestSweepDropsFinishedRecords(t *testing.T) {
	const done = 2 * time.Second
	f := newSweepFixture(t, done, time.Hour)
	ctx, rdb, s, p, k := context.Background(), f.rdb, f.s, f.p, keys.For(f.p)
	f.commit([]string{"plain", "res", "rej", "again", "waiting"}, &store.Batch{Done: []string{"plain", "res", "again", "waiting"},
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
	time.Sleep(done / 2) // a deliberate gap, not a wait: the second finish's entry is this much younger
	f.commit([]string{"next"}, &store.Batch{Done: []string{"again", "next"}})
	second := time.Now()

	exists := f.exists
	gone := f.sweepUntilGone(s, "plain")
	if gone.Sub(first) < done {
		t.Fatalf("plain dropped %v after its finish, before the done retention", gone.Sub(first))
	}
	if exists("rej") {
		t.Fatal("rej, finished with plain, was not dropped with it")
	}
	if !exists("again") || !exists("res") || !exists("waiting") {
		t.Fatalf("dropped with the first entry: again %v, res %v, waiting %v (want all kept)", exists("again"), exists("res"), exists("waiting"))
	}
	gone = f.sweepUntilGone(s, "again")
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
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		result   time.Duration
		wantKept bool
	}{{"kept longer", time.Hour, false}, {"kept for ever", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSweepFixture(t, time.Second, time.Second)
			f.commit([]string{"res", "plain"}, &store.Batch{Done: []string{"res", "plain"},
				Results: []store.Result{{JobID: "res", Value: []byte(`{"total":1}`)}}})
			if ttl := f.rdb.TTL(ctx, keys.For(f.p).Job("res")).Val(); ttl != -1 {
				t.Fatalf("res's TTL %v, want none", ttl)
			}
			cfg := f.cfg
			cfg.ResultRetention = tc.result
			f.sweepUntilGone(store.New(f.rdb, cfg), "plain")
			if kept := f.exists("res"); kept != tc.wantKept {
				t.Fatalf("res kept %v, want %v", kept, tc.wantKept)
			}
		})
	}
}
