package store_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/corralhq/corral/internal/keys"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

func setup(t testing.TB) *store.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions = 8
	cfg.Audit = true
	s := store.New(rdb, cfg)
	if err := s.EnsurePartitions(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func job(id, key string, p int) store.Job {
	return store.Job{ID: id, Handler: "donor.donate", Key: key, Payload: []byte(`{"amount_cents":1}`), Attempt: 1, Partition: p}
}

func TestPartitionCountIsFixed(t *testing.T) {
	s := setup(t)
	cfg := store.DefaultConfig()
	cfg.Partitions = 16
	err := store.New(s.Client(), cfg).EnsurePartitions(context.Background())
	if !errors.Is(err, store.ErrPartitionMismatch) {
		t.Fatalf("another P accepted: %v", err)
	}
	t.Logf("message: %v", err)
}

func TestEnqueueDedup(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	res, err := s.Enqueue(ctx, []store.Job{job("a", "alice", 1), job("a", "alice", 1), job("b", "bob", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Duplicate || !res[1].Duplicate || res[2].Duplicate {
		t.Fatalf("dedup: %+v", res)
	}
	other := job("a", "alice", 1)
	other.Payload = []byte(`{"amount_cents":2}`)
	res, err = s.Enqueue(ctx, []store.Job{other})
	if err != nil || !errors.Is(res[0].Err, store.ErrConflict) {
		t.Fatalf("same id, other content: %+v %v", res, err)
	}
	d, _ := s.Depth(ctx, []int{1})
	if d[1] != 2 {
		t.Fatalf("depth %d, want 2", d[1])
	}
}

// TestFencedCommit: a commit under a stale epoch writes nothing; the
// current owner's commit applies everything at once.
func TestFencedCommit(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	p := (sharding.PartitionOf("water", 8) + 1) % 8 // the emit goes elsewhere
	old, _ := lease.Claim(ctx, rdb, p, "old~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("j1", "alice", p), job("j2", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 2 {
		t.Fatalf("read: %v %v", read, err)
	}
	jobs := read[p]
	batch := &store.Batch{
		Done:   []string{"j1", "j2"},
		Acked:  []string{jobs[0].StreamID, jobs[1].StreamID},
		States: []store.StateWrite{{Entity: store.EntityRef{Type: "donor", Key: "alice"}, Value: []byte(`{"count":2}`)}},
		Emits:  []store.Job{{ID: store.EmittedID("j1", 0), Handler: "campaign.credit", Key: "water", Payload: []byte(`{}`)}},
	}
	// A new owner takes over before the old one commits.
	if _, err := lease.Claim(ctx, rdb, p, "new~1", "old~1"); err != nil {
		t.Fatal(err)
	}
	err = s.CommitBatch(ctx, p, old, batch)
	if !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("stale commit: %v, want ErrFenced", err)
	}
	states, _ := s.States(ctx, "donor", []string{"alice"}, func(string) int { return p })
	if states[0] != nil {
		t.Fatalf("fenced commit wrote state %s", states[0])
	}
	if d, _ := s.Depth(ctx, []int{p, sharding.PartitionOf("water", 8)}); d[p] != 2 || len(d) != 2 || d[sharding.PartitionOf("water", 8)] != 0 {
		t.Fatalf("fenced commit acked or emitted jobs: depths %v", d)
	}
	// The new owner reads the same jobs and commits them.
	h, _ := lease.HolderOf(ctx, rdb, p)
	if err := s.CommitBatch(ctx, p, h.Grant, batch); err != nil {
		t.Fatal(err)
	}
	states, _ = s.States(ctx, "donor", []string{"alice"}, func(string) int { return p })
	if string(states[0]) != `{"count":2}` {
		t.Fatalf("state %q", states[0])
	}
	snap, err := s.Load(ctx, p, jobs, func(string) string { return "donor" })
	if err != nil || !snap.Finished["j1"] || !snap.Finished["j2"] {
		t.Fatalf("jobs not marked finished: %+v %v", snap.Finished, err)
	}
	// The outbox entry reaches its target partition once, even if relayed
	// again (as after a crash between the relay's enqueue and its trim).
	partitionOf := func(k string) int { return sharding.PartitionOf(k, 8) }
	target := partitionOf("water")
	outbox := keys.For(p).Outbox()
	if err := rdb.Copy(ctx, outbox, outbox+":saved", 0, false).Err(); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		if n, err := relay(ctx, s, p, 10, partitionOf); err != nil || n != 1 {
			t.Fatalf("relay %d: %d %v", round, n, err)
		}
		rdb.Del(ctx, outbox)
		rdb.Rename(ctx, outbox+":saved", outbox)
	}
	rdb.Del(ctx, outbox)
	d, _ := s.Depth(ctx, []int{p, target})
	if d[p] != 0 || d[target] != 1 {
		t.Fatalf("depths after commit: %v", d)
	}
}

// TestAckTrimsOnlyTheBatch: a commit drops exactly the stream entries it
// acks, whether they are the stream's head (one trim) or not.
func TestAckTrimsOnlyTheBatch(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 2
	epoch, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	var js []store.Job
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		js = append(js, job(id, id, p))
	}
	if _, err := s.Enqueue(ctx, js); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	r := read[p]
	if len(r) != 5 {
		t.Fatalf("read %d jobs, want 5", len(r))
	}
	// Not the head: a2 and a3 go, a1, a4 and a5 stay.
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"a2", "a3"}, Acked: []string{r[1].StreamID, r[2].StreamID}}); err != nil {
		t.Fatal(err)
	}
	left, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if got := ids(left[p]); got != "a1 a4 a5" {
		t.Fatalf("after acking a2 a3: %q left, want a1 a4 a5", got)
	}
	// The head: a1 and a4 go, a5 stays.
	if err := s.CommitBatch(ctx, p, epoch, &store.Batch{Done: []string{"a1", "a4"}, Acked: []string{r[0].StreamID, r[3].StreamID}}); err != nil {
		t.Fatal(err)
	}
	left, _ = s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if got := ids(left[p]); got != "a5" {
		t.Fatalf("after acking a1 a4: %q left, want a5", got)
	}
}

func ids(js []store.Job) string {
	var out []string
	for _, j := range js {
		out = append(out, j.ID)
	}
	return strings.Join(out, " ")
}

// relay relays up to max entries of partition's outbox and returns how many
// it moved, or the first error (an unreadable entry or a target it could
// not reach).
func relay(ctx context.Context, s *store.Store, partition int, max int64, partitionOf func(key string) int) (int, error) {
	r, err := s.RelayMany(ctx, []store.RelaySource{{Partition: partition}}, max, partitionOf, nil)
	if err != nil {
		return 0, err
	}
	for t, err := range r.Failed {
		return r.Sources[partition].Moved, fmt.Errorf("relay to partition %d: %w", t, err)
	}
	return r.Sources[partition].Moved, r.Sources[partition].Err
}
