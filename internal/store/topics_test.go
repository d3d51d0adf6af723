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
	"github.com/corralhq/corral/internal/testenv"
)

// TestPublishWithCommit: a batch's messages reach their topic only when
// the batch commits; a fenced commit publishes nothing, and a reader
// resumes from its cursor without loss or repeat.
func TestPublishWithCommit(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	const p = 3
	start, err := s.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := lease.Claim(ctx, rdb, p, "old~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("j1", "alice", p), job("j2", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 2 {
		t.Fatalf("read: %v %v", read, err)
	}
	batch := &store.Batch{
		Done:  []string{"j1", "j2"},
		Acked: []string{read[p][0].StreamID, read[p][1].StreamID},
		Publications: []store.Publication{
			{Topic: "gifts", JobID: "j1", Message: []byte(`1`)},
			{Topic: "gifts", JobID: "j2", Message: []byte(`2`)},
			{Topic: "other", JobID: "j2", Message: []byte(`"x"`)},
		},
	}
	if _, err := lease.Claim(ctx, rdb, p, "new~1", "old~1"); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBatch(ctx, p, old, batch); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("stale commit: %v, want ErrFenced", err)
	}
	from := []store.TopicCursor{{Topic: "gifts", Partition: p, ID: store.TopicStart(start)}, {Topic: "gifts", Partition: 5, ID: store.TopicStart(start)}}
	msgs, err := s.ReadTopics(ctx, from, 100, 20*time.Millisecond)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("a fenced commit published %v (%v)", msgs, err)
	}
	h, _ := lease.HolderOf(ctx, rdb, p)
	if err := s.CommitBatch(ctx, p, h.Grant, batch); err != nil {
		t.Fatal(err)
	}
	msgs, err = s.ReadTopics(ctx, from[:1], 1, time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Message) != "1" || msgs[0].JobID != "j1" || msgs[0].Partition != p {
		t.Fatalf("first message: %+v %v", msgs, err)
	}
	from[0].ID = msgs[0].ID
	msgs, err = s.ReadTopics(ctx, from, 100, time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Message) != "2" || msgs[0].Topic != "gifts" {
		t.Fatalf("resumed: %+v %v", msgs, err)
	}
	ttl := rdb.PTTL(ctx, keys.For(p).Topic("gifts")).Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Fatalf("topic stream TTL %v, want the topic retention", ttl)
	}
}

// TestWaitFinished: a wait placed before a job finishes is woken by the
// commit that finishes it, not by commits of other jobs.
func TestWaitFinished(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	const p = 2
	g, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("other", "bob", p), job("mine", "alice", p)}); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 2 {
		t.Fatalf("read: %v %v", read, err)
	}
	from, err := s.FinishedFrom(ctx, []int{0, p})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"mine": true}
	if err := s.CommitBatch(ctx, p, g, &store.Batch{Done: []string{"other"}, Acked: []string{read[p][0].StreamID}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.WaitFinished(ctx, from, want, 50*time.Millisecond); ok || err != nil {
		t.Fatalf("woken by another job's commit: %v %v", ok, err)
	}
	type waited struct {
		ok  bool
		err error
	}
	woken := make(chan waited, 1)
	start := time.Now()
	go func() {
		ok, err := s.WaitFinished(ctx, from, want, 5*time.Second)
		woken <- waited{ok, err}
	}()
	// The wait is placed: its read blocks in Redis (this test's own server).
	testenv.Eventually(t, 2*time.Second, func() error {
		info, err := s.Client().Info(ctx, "clients").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok && n != "0" {
				return nil
			}
		}
		return fmt.Errorf("no read blocked yet: %q", info)
	})
	if err := s.CommitBatch(ctx, p, g, &store.Batch{Done: []string{"mine"}, Acked: []string{read[p][1].StreamID}}); err != nil {
		t.Fatal(err)
	}
	w := <-woken
	if !w.ok || w.err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("wait: %v %v after %v", w.ok, w.err, time.Since(start))
	}
}

// TestWatchedStates: a commit publishes an entity's states, each job's in
// order, only while someone watches the entity.
func TestWatchedStates(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	const p = 4
	g, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	alice := store.EntityRef{Type: "donor", Key: "alice"}
	commit := func(id string, values ...string) {
		t.Helper()
		if _, err := s.Enqueue(ctx, []store.Job{job(id, "alice", p)}); err != nil {
			t.Fatal(err)
		}
		read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
		if err != nil || len(read[p]) != 1 {
			t.Fatalf("read: %v %v", read, err)
		}
		b := &store.Batch{Done: []string{id}, Acked: []string{read[p][0].StreamID}}
		for _, v := range values {
			if v == "DELETE" { // an entity delete (coordinator entities delete)
				b.StateSteps = append(b.StateSteps, store.StateWrite{Entity: alice, Delete: true})
				continue
			}
			b.StateSteps = append(b.StateSteps, store.StateWrite{Entity: alice, Value: []byte(v)})
		}
		b.States = []store.StateWrite{b.StateSteps[len(b.StateSteps)-1]}
		if err := s.CommitBatch(ctx, p, g, b); err != nil {
			t.Fatal(err)
		}
	}
	start, _ := s.Now(ctx)
	from := []store.TopicCursor{{Topic: store.StateTopic("donor", "alice"), Partition: p, ID: store.TopicStart(start)}}
	commit("j1", `{"n":1}`)
	if msgs, err := s.ReadTopics(ctx, from, 10, 10*time.Millisecond); err != nil || len(msgs) != 0 {
		t.Fatalf("an unwatched state was published: %v %v", msgs, err)
	}
	if err := s.Watch(ctx, p, "donor", "alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	commit("j2", `{"n":2}`, `{"n":3}`)
	msgs, err := s.ReadTopics(ctx, from, 10, time.Second)
	if err != nil || len(msgs) != 2 || string(msgs[0].Message) != `{"n":2}` || string(msgs[1].Message) != `{"n":3}` {
		t.Fatalf("watched states: %+v %v", msgs, err)
	}
	// A delete after a write in one batch: the watcher sees the write,
	// then null; the state is gone.
	from[0].ID = msgs[1].ID
	commit("j3", `{"n":4}`, "DELETE")
	msgs, err = s.ReadTopics(ctx, from, 10, time.Second)
	if err != nil || len(msgs) != 2 || string(msgs[0].Message) != `{"n":4}` || string(msgs[1].Message) != "null" {
		t.Fatalf("watched states of a delete: %+v %v", msgs, err)
	}
	if got, err := s.States(ctx, "donor", []string{"alice"}, func(string) int { return p }); err != nil || got[0] != nil {
		t.Fatalf("state after the delete: %q, %v", got, err)
	}
}
