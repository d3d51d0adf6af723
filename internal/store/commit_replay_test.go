package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// TestReplayedJobCommitsAgain: a dead letter replayed to the stream is a
// job without a status again, so its next commit finishes it once, and a
// second one is refused as for any finished job.
func TestReplayedJobCommitsAgain(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 6
	grant, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("r1", "k", p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if len(read[p]) != 1 {
		t.Fatalf("read %+v", read[p])
	}
	j := read[p][0]
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Acked: []string{j.StreamID}, Dead: []store.DeadJob{{Job: j, Error: "no"}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReplayDead(ctx, []string{"r1"}); err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	if st, _ := s.Client().HGet(ctx, keys.For(p).Job("r1"), "s").Result(); st != "" {
		t.Fatalf("replayed job's record has status %q, want none", st)
	}
	read, _ = s.Read(ctx, map[int]string{p: j.StreamID}, 10, 10*time.Millisecond)
	if len(read[p]) != 1 || read[p][0].ID != "r1" {
		t.Fatalf("replayed job not in the stream: %+v", read[p])
	}
	again := &store.Batch{Done: []string{"r1"}, Acked: []string{read[p][0].StreamID}}
	if err := s.CommitBatch(ctx, p, grant, again); err != nil {
		t.Fatalf("commit of the replayed job: %v", err)
	}
	st, err := s.StatusesIn(ctx, []string{"r1"}, nil)
	if err != nil || !st[0].Finished || st[0].Dead {
		t.Fatalf("status after the replayed run %+v %v, want done", st, err)
	}
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Done: []string{"r1"}}); !errors.Is(err, store.ErrAlreadyFinished) {
		t.Fatalf("second commit of the replayed job: %v, want ErrAlreadyFinished", err)
	}
}
