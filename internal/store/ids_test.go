package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

// TestIDUniqueAcrossPartitions: a job id names one job in the whole
// cluster. The same id for a key of another partition is refused, in a
// later call and in the same call, and the same content again is a
// duplicate, also after a submission that reserved the id but never
// reached its partition.
func TestIDUniqueAcrossPartitions(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	res, err := s.Enqueue(ctx, []store.Job{job("gift-1", "alice", 1)})
	if err != nil || res[0].Err != nil || res[0].Duplicate {
		t.Fatalf("first use: %+v %v", res, err)
	}
	res, err = s.Enqueue(ctx, []store.Job{job("gift-1", "bob", 2)})
	if err != nil || !errors.Is(res[0].Err, store.ErrConflict) {
		t.Fatalf("same id for a key of another partition: %+v %v, want ErrConflict", res, err)
	}
	t.Logf("message: %v", res[0].Err)
	res, err = s.Enqueue(ctx, []store.Job{job("gift-2", "alice", 1), job("gift-2", "bob", 2)})
	if err != nil || res[0].Err != nil || !errors.Is(res[1].Err, store.ErrConflict) {
		t.Fatalf("same id twice in one call: %+v %v, want the second refused", res, err)
	}
	// A job that skips the queue (a direct call) reserves its id too.
	if err := s.ReserveID(ctx, job("gift-2", "bob", 2)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("direct call reusing an id: %v, want ErrConflict", err)
	}
	if err := s.ReserveID(ctx, job("gift-2", "alice", 1)); err != nil {
		t.Fatalf("direct call of the same job: %v", err)
	}
	if d, _ := s.Depth(ctx, []int{1, 2}); d[1] != 2 || d[2] != 0 {
		t.Fatalf("depths %v, want 2 jobs in partition 1 and none in 2", d)
	}
	res, _ = s.Enqueue(ctx, []store.Job{job("gift-1", "alice", 1)})
	if !res[0].Duplicate || res[0].Err != nil {
		t.Fatalf("same content again: %+v, want a duplicate", res)
	}
	// The id was reserved but the partition's write was lost (a crash
	// between the two): the same content again must still be enqueued.
	rdb := s.Client()
	if err := rdb.Del(ctx, keys.For(1).Job("gift-1"), keys.For(1).Queue()).Err(); err != nil {
		t.Fatal(err)
	}
	res, _ = s.Enqueue(ctx, []store.Job{job("gift-1", "alice", 1)})
	if res[0].Duplicate || res[0].Err != nil {
		t.Fatalf("resubmission after a lost enqueue: %+v, want enqueued", res)
	}
	if d, _ := s.Depth(ctx, []int{1}); d[1] != 1 {
		t.Fatalf("depth %d after the resubmission, want 1", d[1])
	}
}

// TestRepeatedIDInOneBatchCommits: a batch that names one id twice (the
// same job delivered twice) commits, once, instead of being refused.
func TestRepeatedIDInOneBatchCommits(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 4
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("r1", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if len(read[p]) != 1 {
		t.Fatalf("read %d jobs, want 1", len(read[p]))
	}
	b := &store.Batch{Done: []string{"r1", "r1"}, Acked: []string{read[p][0].StreamID}}
	if err := s.CommitBatch(ctx, p, epoch, b); err != nil {
		t.Fatalf("batch with one id twice: %v", err)
	}
	if sts, _ := s.StatusesIn(ctx, []string{"r1"}, nil); !sts[0].Finished {
		t.Fatalf("r1 not finished: %+v", sts[0])
	}
}

// TestResultOfEmittedJobBeforeItRuns: an emitted job is known (queued)
// from its parent's commit on: before the relay moved it, after, and done
// once its own commit ran.
func TestResultOfEmittedJobBeforeItRuns(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	partitionOf := func(k string) int { return sharding.PartitionOf(k, 8) }
	target := partitionOf("water")
	p := (target + 1) % 8
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("par", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	child := store.EmittedID("par", 0)
	err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"par"}, Acked: []string{read[p][0].StreamID},
		Emits: []store.Job{{ID: child, Handler: "campaign.credit", Key: "water", Payload: []byte(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	queued := func(when string) {
		t.Helper()
		sts, err := s.StatusesIn(ctx, []string{child, store.EmittedID("par", 1)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sts[0].Known || sts[0].Finished {
			t.Fatalf("%s: emitted job %s is %+v, want known and queued", when, child, sts[0])
		}
		if sts[1].Known {
			t.Fatalf("%s: a job its parent never emitted is %+v, want unknown", when, sts[1])
		}
	}
	queued("before the relay")
	if _, err := relay(ctx, s, p, 10, partitionOf); err != nil {
		t.Fatal(err)
	}
	queued("after the relay")
	te, _ := lease.Claim(ctx, s.Client(), target, "w~1", "")
	read, _ = s.Read(ctx, map[int]string{target: store.StartID}, 10, 10*time.Millisecond)
	if len(read[target]) != 1 || read[target][0].ID != child {
		t.Fatalf("target stream: %+v", read[target])
	}
	if err := s.CommitBatch(ctx, target, te, &store.Batch{Done: []string{child}, Acked: []string{read[target][0].StreamID}}); err != nil {
		t.Fatal(err)
	}
	if sts, _ := s.StatusesIn(ctx, []string{child}, nil); !sts[0].Finished {
		t.Fatalf("after its commit: %+v, want done", sts[0])
	}
}

// TestAlreadyFinishedGivesBackTheClaims: a batch that holds a job an
// earlier commit finished is refused with that job's id, and the jobs
// before it in the batch are left unfinished.
func TestAlreadyFinishedGivesBackTheClaims(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 4
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"old"}}); err != nil {
		t.Fatal(err)
	}
	err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"new1", "new2", "old"},
		Results: []store.Result{{JobID: "new1", Value: []byte("r")}}})
	if !errors.Is(err, store.ErrAlreadyFinished) || !strings.Contains(err.Error(), "old") {
		t.Fatalf("commit with a finished job: %v, want ErrAlreadyFinished naming old", err)
	}
	sts, err := s.StatusesIn(ctx, []string{"new1", "new2", "old"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Finished || sts[1].Finished || !sts[2].Finished {
		t.Fatalf("after the refused commit: %+v, want new1 and new2 unfinished, old finished", sts)
	}
	if n, _ := s.Client().Exists(ctx, keys.For(p).Job("new1")).Result(); n != 0 {
		t.Fatalf("new1's record is left after the refused commit")
	}
	// A finished job given again with an answer (which the script checks
	// another way than one without) is refused too, and keeps its record.
	before, err := s.Client().HGetAll(ctx, keys.For(p).Job("old")).Result()
	if err != nil {
		t.Fatal(err)
	}
	err = s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"new1", "old"},
		Results: []store.Result{{JobID: "new1", Value: []byte("r")}, {JobID: "old", Value: []byte("again")}}})
	if !errors.Is(err, store.ErrAlreadyFinished) || !strings.Contains(err.Error(), "old") {
		t.Fatalf("commit with a finished job and its answer: %v, want ErrAlreadyFinished naming old", err)
	}
	after, err := s.Client().HGetAll(ctx, keys.For(p).Job("old")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("old's record after the refused commit: %v, want it as it was, %v", after, before)
	}
	if n, _ := s.Client().Exists(ctx, keys.For(p).Job("new1")).Result(); n != 0 {
		t.Fatalf("new1's record is left after the second refused commit")
	}
}
