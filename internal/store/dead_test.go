package store_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// TestDeadLettersAreBounded: the oldest dead letters of a partition are
// dropped past the cap, and all of them past the retention.
func TestDeadLettersAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions, cfg.DeadMax, cfg.DeadRetention = 4, 3, time.Hour
	s := store.New(rdb, cfg)
	const p = 2
	epoch, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		d := store.DeadJob{Job: job(fmt.Sprintf("d%d", i), "alice", p), Error: "boom"}
		if err := s.CommitBatch(ctx, p, epoch, &store.Batch{Dead: []store.DeadJob{d}}); err != nil {
			t.Fatal(err)
		}
	}
	// Dead letters of one millisecond are ordered by id, d0 the oldest.
	got, err := s.TrimDead(ctx, []int{p}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got[p].Capped != 2 || got[p].Expired != 0 {
		t.Fatalf("trim past the cap: %+v, want 2 dropped for the cap", got[p])
	}
	ids, _ := s.AllDead(ctx)
	if fmt.Sprint(ids) != "[d2 d3 d4]" {
		t.Fatalf("dead letters left %v, want the 3 newest", ids)
	}
	if n := rdb.HLen(ctx, keys.For(p).Dead()).Val(); n != 3 {
		t.Fatalf("%d dead records left, want 3", n)
	}
	got, err = s.TrimDead(ctx, []int{p}, time.Now().Add(cfg.DeadRetention+time.Second))
	if err != nil || got[p].Expired != 3 {
		t.Fatalf("trim past the retention: %+v %v, want 3 dropped for age", got[p], err)
	}
	if n := rdb.Exists(ctx, keys.For(p).Dead(), keys.For(p).DeadIndex()).Val(); n != 0 {
		t.Fatalf("%d dead-letter keys left", n)
	}
}

// TestListDeadInTimeOrder: dead letters list oldest first across every
// partition (ties of one millisecond by id), page after page.
func TestListDeadInTimeOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions = 4
	s := store.New(rdb, cfg)
	grants := map[int]lease.Grant{}
	for p := range cfg.Partitions {
		g, err := lease.Claim(ctx, rdb, p, "w~1", "")
		if err != nil {
			t.Fatal(err)
		}
		grants[p] = g
	}
	// Each commit in a later millisecond than the one before; the second
	// holds two letters of one millisecond.
	var want []string
	last := time.Now().UnixMilli()
	for i, c := range []struct {
		p   int
		ids []string
	}{{3, []string{"a"}}, {1, []string{"c", "b"}}, {0, []string{"d"}}, {3, []string{"e"}}, {2, []string{"f"}}} {
		for time.Now().UnixMilli() == last {
			runtime.Gosched() // until the clock ticks
		}
		var b store.Batch
		for _, id := range c.ids {
			b.Dead = append(b.Dead, store.DeadJob{Job: job(id, fmt.Sprintf("k%d", i), c.p), Error: "boom"})
		}
		if err := s.CommitBatch(ctx, c.p, grants[c.p], &b); err != nil {
			t.Fatal(err)
		}
		last = time.Now().UnixMilli()
	}
	want = []string{"a", "b", "c", "d", "e", "f"}
	var got []string
	var prev int64
	after := ""
	for pages := 0; ; pages++ {
		recs, next, err := s.ListDead(ctx, 2, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.DeadAtMs < prev {
				t.Errorf("%s dead at %d listed after one dead at %d", r.ID, r.DeadAtMs, prev)
			}
			prev = r.DeadAtMs
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatalf("still paging after %v", got)
		}
		after = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
}
