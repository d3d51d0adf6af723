package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// TestRegrantAfterLostWritesIsFenced: Redis loses the writes after a
// snapshot (a crash with fsync every second, or a replica promoted before
// it had them), so a partition's epoch goes back. The next grant then
// counts up to the epoch a live worker still holds from before the loss;
// that worker's in-flight batch must still be refused.
func TestRegrantAfterLostWritesIsFenced(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	p := sharding.PartitionOf("alice", 8)
	k := keys.For(p)
	if _, err := lease.Claim(ctx, rdb, p, "a~1", ""); err != nil {
		t.Fatal(err)
	}
	snap := dumpKeys(t, rdb, k.Owner(), k.Epoch())

	// b takes the partition over and starts a batch; then Redis loses
	// every write since the snapshot, b's grant with them.
	bGrant, err := lease.Claim(ctx, rdb, p, "b~1", "a~1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("j1", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 1 {
		t.Fatalf("read: %v %v", read, err)
	}
	batch := &store.Batch{
		Done:   []string{"j1"},
		Acked:  []string{read[p][0].StreamID},
		States: []store.StateWrite{{Entity: store.EntityRef{Type: "donor", Key: "alice"}, Value: []byte(`{"from":"b"}`)}},
	}
	restoreKeys(t, rdb, snap)

	// c takes the partition over from a, as the restored Redis says.
	cGrant, err := lease.Claim(ctx, rdb, p, "c~1", "a~1")
	if err != nil {
		t.Fatal(err)
	}
	if cGrant == bGrant {
		t.Errorf("two grants of partition %d carry the same fencing token %v", p, cGrant)
	}
	if err := s.CommitBatch(ctx, p, bGrant, batch); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("b's commit under its lost grant %v (c holds %v): %v, want ErrFenced", bGrant, cGrant, err)
	}
	states, _ := s.States(ctx, "donor", []string{"alice"}, func(string) int { return p })
	if states[0] != nil {
		t.Fatalf("the stale owner wrote state %s", states[0])
	}
}

// dumpKeys saves keys as Redis would hold them in a snapshot.
func dumpKeys(t *testing.T, rdb redis.UniversalClient, ks ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, key := range ks {
		v, err := rdb.Dump(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("dump %s: %v", key, err)
		}
		out[key] = v
	}
	return out
}

// restoreKeys puts the saved keys back, losing what was written since.
func restoreKeys(t *testing.T, rdb redis.UniversalClient, saved map[string]string) {
	t.Helper()
	for key, v := range saved {
		if err := rdb.RestoreReplace(context.Background(), key, 0, v).Err(); err != nil {
			t.Fatalf("restore %s: %v", key, err)
		}
	}
}

// TestCommitAfterLostCommitsIsFenced: Redis loses the last commit a worker
// made (a restore to a snapshot taken just before it), while the worker
// keeps its grant, which Redis still has. The worker's next batch was
// built on the state that commit wrote; it must not be written over the
// state Redis kept.
func TestCommitAfterLostCommitsIsFenced(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	p := sharding.PartitionOf("alice", 8)
	k := keys.For(p)
	grant, err := lease.Claim(ctx, rdb, p, "a~1", "")
	if err != nil {
		t.Fatal(err)
	}
	donor := store.EntityRef{Type: "donor", Key: "alice"}
	commitOne := func(id, state string) error {
		if _, err := s.Enqueue(ctx, []store.Job{job(id, "alice", p)}); err != nil {
			t.Fatal(err)
		}
		read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
		if err != nil || len(read[p]) == 0 {
			t.Fatalf("read: %v %v", read, err)
		}
		last := read[p][len(read[p])-1]
		return s.CommitBatch(ctx, p, grant, &store.Batch{Done: []string{last.ID}, Acked: []string{last.StreamID},
			States: []store.StateWrite{{Entity: donor, Value: []byte(state)}}})
	}
	if err := commitOne("c1", `{"count":1}`); err != nil {
		t.Fatal(err)
	}
	all := []string{k.Epoch(), k.Queue(), k.State("donor", "alice"), k.Job("c1")}
	for _, key := range []string{k.Commits()} {
		if n, _ := rdb.Exists(ctx, key).Result(); n == 1 {
			all = append(all, key)
		}
	}
	snap := dumpKeys(t, rdb, all...)
	if err := commitOne("c2", `{"count":2}`); err != nil {
		t.Fatal(err)
	}
	restoreKeys(t, rdb, snap) // c2's commit is lost; the grant is not

	// The next batch counts on from {"count":2}, which Redis no longer has.
	err = commitOne("c3", `{"count":3}`)
	if !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("commit on top of a lost commit: %v, want ErrFenced", err)
	}
	states, _ := s.States(ctx, "donor", []string{"alice"}, func(string) int { return p })
	if string(states[0]) != `{"count":1}` {
		t.Fatalf("state %s, want the one Redis kept, {\"count\":1}", states[0])
	}
}
