package store_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

// TestEnqueueRacingScriptLoad: Redis forgets its scripts (a restart, SCRIPT
// FLUSH) and another client loads them again while an enqueue pipeline
// runs, so some of its calls fail with NOSCRIPT and the rest run. Every
// new job must still be reported enqueued, none as a duplicate of itself,
// and each must be in its stream once.
func TestEnqueueRacingScriptLoad(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	const rounds, n, parts = 40, 1024, 64
	var queued int64
	for round := range rounds {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		jobs := make([]store.Job, n)
		for i := range jobs {
			key := "k" + strconv.Itoa(i)
			jobs[i] = store.Job{ID: "r" + strconv.Itoa(round) + "-" + strconv.Itoa(i), Handler: "donor.donate", Key: key,
				Payload: []byte(`{"amount_cents":1}`), Attempt: 1, Partition: sharding.PartitionOf(key, parts)}
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second enqueue on another connection loads the script
			// while the first one's pipeline is under way.
			if _, err := s.Enqueue(ctx, []store.Job{{ID: "other-" + strconv.Itoa(round), Handler: "h", Key: "x", Payload: []byte(`1`), Attempt: 1}}); err != nil {
				t.Error(err)
			}
		}()
		res, err := s.Enqueue(ctx, jobs)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil || r.Duplicate {
				t.Fatalf("round %d: new job %s reported %+v", round, jobs[i].ID, r)
			}
		}
		queued += n
	}
	var inStreams int64
	for p := range parts {
		l, err := rdb.XLen(ctx, keys.For(p).Queue()).Result()
		if err != nil {
			t.Fatal(err)
		}
		inStreams += l
	}
	if want := queued + rounds; inStreams != want { // and one other job per round
		t.Fatalf("%d entries in the streams for %d jobs", inStreams, want)
	}
}
