package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

// keyIn returns a key of partition p (of 8).
func keyIn(t *testing.T, p int) string {
	t.Helper()
	for i := 0; i < 10000; i++ {
		if k := fmt.Sprintf("k%d", i); sharding.PartitionOf(k, 8) == p {
			return k
		}
	}
	t.Fatalf("no key found in partition %d", p)
	return ""
}

// emit commits one batch in partition p that emits a job for each key, and
// so leaves one outbox entry.
func emit(t *testing.T, s *store.Store, p int, epoch lease.Grant, id string, keysTo ...string) {
	t.Helper()
	var emits []store.Job
	for i, k := range keysTo {
		emits = append(emits, store.Job{ID: fmt.Sprintf("%s/%d", id, i), Handler: "campaign.credit", Key: k, Payload: []byte(`{}`)})
	}
	if err := s.CommitBatch(context.Background(), p, epoch, &store.Batch{Emits: emits}); err != nil {
		t.Fatal(err)
	}
}

// TestRelayGoesOnPastAFailingTarget: one target partition whose enqueue
// fails (its queue key has the wrong type) neither stops the relay to the
// other targets nor the trimming of the outboxes that do not need it, and
// its jobs arrive, once, when it works again.
func TestRelayGoesOnPastAFailingTarget(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	partitionOf := func(k string) int { return sharding.PartitionOf(k, 8) }
	const src1, src2, bad, good, good2 = 0, 1, 5, 6, 7
	e1, _ := lease.Claim(ctx, rdb, src1, "w~1", "")
	e2, _ := lease.Claim(ctx, rdb, src2, "w~1", "")
	for i := 0; i < 3; i++ {
		emit(t, s, src1, e1, fmt.Sprintf("a%d", i), keyIn(t, good), keyIn(t, bad))
		emit(t, s, src2, e2, fmt.Sprintf("b%d", i), keyIn(t, good2))
	}
	if err := rdb.Set(ctx, keys.For(bad).Queue(), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	relay := func() error {
		r, err := s.RelayMany(ctx, []store.RelaySource{{Partition: src1}, {Partition: src2}}, 10, partitionOf, nil)
		if err != nil {
			return err
		}
		for target, err := range r.Failed {
			return fmt.Errorf("target %d: %w", target, err)
		}
		return nil
	}
	for round := 0; round < 3; round++ {
		err := relay()
		t.Logf("round %d: %v", round, err)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("target %d:", bad)) {
			t.Fatalf("round %d: %v, want the failure of target %d", round, err, bad)
		}
	}
	for _, c := range []struct {
		p    int
		want int64
	}{{good, 3}, {good2, 3}} {
		if n := rdb.XLen(ctx, keys.For(c.p).Queue()).Val(); n != c.want {
			t.Errorf("target %d holds %d jobs, want %d", c.p, n, c.want)
		}
	}
	if n := rdb.XLen(ctx, keys.For(src2).Outbox()).Val(); n != 0 {
		t.Errorf("outbox of partition %d still holds %d entries although all its targets work", src2, n)
	}
	if n := rdb.XLen(ctx, keys.For(src1).Outbox()).Val(); n != 3 {
		t.Errorf("outbox of partition %d holds %d entries, want the 3 its failing target still needs", src1, n)
	}
	// The target works again: its jobs arrive once, the others are not
	// added twice.
	rdb.Del(ctx, keys.For(bad).Queue())
	for round := 0; round < 2; round++ {
		if err := relay(); err != nil {
			t.Fatalf("relay after the target healed: %v", err)
		}
	}
	for _, c := range []struct {
		p    int
		want int64
	}{{bad, 3}, {good, 3}, {good2, 3}} {
		if n := rdb.XLen(ctx, keys.For(c.p).Queue()).Val(); n != c.want {
			t.Errorf("after healing: target %d holds %d jobs, want %d", c.p, n, c.want)
		}
	}
	if n := rdb.XLen(ctx, keys.For(src1).Outbox()).Val(); n != 0 {
		t.Errorf("after healing: outbox of partition %d holds %d entries", src1, n)
	}
}

// TestRelayHoldsTargetBack: a held target gets nothing, the entries with
// jobs for it stay, and a read from after them reaches the entries behind.
func TestRelayHoldsTargetBack(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	partitionOf := func(k string) int { return sharding.PartitionOf(k, 8) }
	const src, held, good = 0, 5, 6
	e, _ := lease.Claim(ctx, rdb, src, "w~1", "")
	emit(t, s, src, e, "a0", keyIn(t, good), keyIn(t, held))
	emit(t, s, src, e, "a1", keyIn(t, held))
	emit(t, s, src, e, "a2", keyIn(t, good))
	isHeld := func(t int) bool { return t == held }
	r, err := s.RelayMany(ctx, []store.RelaySource{{Partition: src}}, 2, partitionOf, isHeld)
	if err != nil || len(r.Failed) != 0 {
		t.Fatalf("relay: %v %v", err, r.Failed)
	}
	if got := r.Sources[src]; got.Read != 2 || got.Moved != 0 || got.Kept != 2 {
		t.Fatalf("first round: %+v, want 2 read and kept", got)
	}
	if _, ok := r.Reached[held]; ok || r.Reached[good] != 1 {
		t.Fatalf("first round reached %v, want 1 job to %d and nothing to %d", r.Reached, good, held)
	}
	r, err = s.RelayMany(ctx, []store.RelaySource{{Partition: src, After: r.Sources[src].Last}}, 2, partitionOf, isHeld)
	if err != nil || r.Sources[src].Moved != 1 {
		t.Fatalf("read past the kept entries: %+v %v", r.Sources[src], err)
	}
	if n := rdb.XLen(ctx, keys.For(held).Queue()).Val(); n != 0 {
		t.Fatalf("held target got %d jobs", n)
	}
	if n := rdb.XLen(ctx, keys.For(good).Queue()).Val(); n != 2 {
		t.Fatalf("target %d got %d jobs, want 2", good, n)
	}
	// Released: the kept entries go, in order, and nothing twice.
	if _, err := relay(ctx, s, src, 10, partitionOf); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, keys.For(held).Queue()).Val(); n != 2 {
		t.Fatalf("released target got %d jobs, want 2", n)
	}
	if n := rdb.XLen(ctx, keys.For(good).Queue()).Val(); n != 2 {
		t.Fatalf("target %d got %d jobs after the release, want still 2", good, n)
	}
	if n := rdb.XLen(ctx, keys.For(src).Outbox()).Val(); n != 0 {
		t.Fatalf("outbox holds %d entries", n)
	}
}
