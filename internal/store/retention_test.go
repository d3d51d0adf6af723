package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// TestFinishedRecordRetention: a finished job's record, answer included,
// is written with its finish. One kept for the done retention has no time
// to live of its own (the sweep of the finished log drops it, see
// TestSweepDropsFinishedRecords); one with a result kept longer has the
// result retention; one kept for ever has none either.
func TestFinishedRecordRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	for _, tc := range []struct {
		name            string
		done, result    time.Duration
		wantNoResult    time.Duration // -1: no time to live of its own
		wantWithResult  time.Duration
		wantRejectedTTL time.Duration
	}{
		{"result kept longer", time.Minute, time.Hour, -1, time.Hour, -1},
		{"result kept shorter", time.Hour, time.Minute, -1, -1, -1},
		{"results kept for ever", time.Minute, 0, -1, -1, -1},
		{"records kept for ever", 0, time.Hour, -1, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			cfg := store.DefaultConfig()
			cfg.Partitions = 4
			cfg.DoneRetention, cfg.ResultRetention = tc.done, tc.result
			s := store.New(rdb, cfg)
			if err := s.EnsurePartitions(ctx); err != nil {
				t.Fatal(err)
			}
			p := 1
			grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
			if err != nil {
				t.Fatal(err)
			}
			plain, withResult, rejected := job("plain", "a", p), job("res", "b", p), job("rej", "c", p)
			if _, err := s.Enqueue(ctx, []store.Job{plain, withResult, rejected}); err != nil {
				t.Fatal(err)
			}
			read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, time.Millisecond)
			if err != nil || len(read[p]) != 3 {
				t.Fatalf("read %d jobs: %v", len(read[p]), err)
			}
			b := &store.Batch{Jobs: read[p], Attempts: map[string]int{},
				Done:     []string{"plain", "res"},
				Results:  []store.Result{{JobID: "res", Value: []byte(`{"total":1}`)}},
				Rejected: []store.Rejection{{JobID: "rej", Attempts: 1, Reason: "over the limit"}}}
			for _, j := range read[p] {
				b.Acked = append(b.Acked, j.StreamID)
			}
			if err := s.CommitBatch(ctx, p, grant, b); err != nil {
				t.Fatal(err)
			}
			k := keys.For(p)
			ttl := func(id string) time.Duration {
				d, err := rdb.TTL(ctx, k.Job(id)).Result()
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			near := func(got, want time.Duration) bool {
				if want < 0 {
					return got < 0
				}
				return got > want-5*time.Second && got <= want
			}
			for id, want := range map[string]time.Duration{"plain": tc.wantNoResult, "res": tc.wantWithResult, "rej": tc.wantRejectedTTL} {
				if got := ttl(id); !near(got, want) {
					t.Errorf("record of %s: TTL %v, want %v", id, got, want)
				}
			}
			rec, err := rdb.HGetAll(ctx, k.Job("res")).Result()
			if err != nil || !strings.HasPrefix(rec["s"], "d") || rec["r"] != `{"total":1}` {
				t.Fatalf("record of res: %v %v", rec, err)
			}
			// The handler and key are in the finished log, found by the record's finish time.
			if infos, err := s.Describe(ctx, []string{"res"}); err != nil || infos[0].Key != "b" || infos[0].Handler != "donor.donate" {
				t.Fatalf("res described as %+v %v", infos, err)
			}
			rec, err = rdb.HGetAll(ctx, k.Job("rej")).Result()
			if err != nil || !strings.HasPrefix(rec["s"], "n") || rec["m"] != "over the limit" || rec["r"] != "" {
				t.Fatalf("record of rej: %v %v", rec, err)
			}
			if rec, _ := rdb.HGetAll(ctx, k.Job("plain")).Result(); rec["r"] != "" || rec["m"] != "" || !strings.HasPrefix(rec["s"], "d") {
				t.Fatalf("record of plain: %v", rec)
			}
		})
	}
}
