package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// TestTopicsOnRedisCluster: publishing, watched states, waits for results
// and cluster events work where every partition is a slot of its own
// (reads poll each slot instead of blocking on all).
func TestTopicsOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedisCluster(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions = 8
	s := store.New(rdb, cfg)
	ctx := context.Background()
	if err := s.EnsurePartitions(ctx); err != nil {
		t.Fatal(err)
	}
	start, err := s.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var from []store.TopicCursor
	for p := range 8 {
		from = append(from, store.TopicCursor{Topic: "gifts", Partition: p, ID: store.TopicStart(start)})
	}
	from = append(from, store.TopicCursor{Topic: store.ClusterTopic, Partition: -1, ID: store.TopicStart(start)})
	if err := s.Watch(ctx, 5, "donor", "alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	wait, err := s.FinishedFrom(ctx, []int{1, 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{1, 5} {
		g, err := lease.Claim(ctx, rdb, p, "w~1", "")
		if err != nil {
			t.Fatal(err)
		}
		id := "j" + string(rune('0'+p))
		if _, err := s.Enqueue(ctx, []store.Job{job(id, "alice", p)}); err != nil {
			t.Fatal(err)
		}
		read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
		if err != nil || len(read[p]) != 1 {
			t.Fatalf("read: %v %v", read, err)
		}
		w := store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: "alice"}, Value: []byte(`{"p":1}`)}
		b := &store.Batch{Done: []string{id}, Acked: []string{read[p][0].StreamID}, States: []store.StateWrite{w}, StateSteps: []store.StateWrite{w},
			Publications: []store.Publication{{Topic: "gifts", JobID: id, Message: []byte(`"` + id + `"`)}}}
		if err := s.CommitBatch(ctx, p, g, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PublishEvent(ctx, store.ClusterEvent{Kind: "member.joined", Member: "w1"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.WaitFinished(ctx, wait, map[string]bool{"j5": true}, time.Second); !ok || err != nil {
		t.Fatalf("wait for j5: %v %v", ok, err)
	}
	got := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		msgs, err := s.ReadTopics(ctx, from, 10, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got[m.Topic+" "+string(m.Message)] = true
			for i := range from {
				if from[i].Topic == m.Topic && from[i].Partition == m.Partition {
					from[i].ID = m.ID
				}
			}
		}
	}
	for _, want := range []string{`gifts "j1"`, `gifts "j5"`, `$cluster {"kind":"member.joined","member":"w1","by":""}`} {
		if !got[want] {
			t.Errorf("missing %s; got %v", want, got)
		}
	}
	state := []store.TopicCursor{{Topic: store.StateTopic("donor", "alice"), Partition: 5, ID: store.TopicStart(start)}}
	if msgs, err := s.ReadTopics(ctx, state, 10, time.Second); err != nil || len(msgs) != 1 {
		t.Fatalf("watched state in partition 5: %v %v", msgs, err)
	}
}
