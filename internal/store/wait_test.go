package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// replicated starts a primary with one replica (both real redis-servers)
// and returns a store over the primary that waits for waitReplicas, and
// the replica's process id.
func replicated(t testing.TB, waitReplicas int) (*store.Store, *redis.Client, *testenv.RedisServer) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	primary := testenv.StartRedis(t)
	replica := testenv.StartRedis(t)
	rc := replica.Client(t)
	ctx := context.Background()
	if err := rc.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(primary.Server.Port)).Err(); err != nil {
		t.Fatal(err)
	}
	pc := primary.Client(t)
	testenv.Eventually(t, 30*time.Second, func() error {
		info, _ := pc.Info(ctx, "replication").Result()
		if !containsLine(info, "connected_slaves:1") {
			return fmt.Errorf("the replica is not connected: %s", info)
		}
		if n, err := pc.Do(ctx, "WAIT", 1, 1000).Int64(); n != 1 {
			return fmt.Errorf("the replica has not caught up: WAIT = %d, %v", n, err)
		}
		return nil
	})
	cfg := store.DefaultConfig()
	cfg.Partitions = 8
	cfg.WaitReplicas = waitReplicas
	cfg.WaitTimeout = 2 * time.Second // generous: a loaded machine replicates slowly
	s := store.New(pc, cfg)
	if err := s.EnsurePartitions(ctx); err != nil {
		t.Fatal(err)
	}
	return s, rc, replica.Server
}

func containsLine(s, line string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		if l := s[:i]; l == line || l == line+"\r" {
			return true
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return false
}

// TestWaitForReplicas: with a replica to wait for, an acknowledged submit
// and commit are on the replica when they return; a replica that cannot
// answer makes them ErrNotReplicated instead of a silent success.
func TestWaitForReplicas(t *testing.T) {
	s, replica, srv := replicated(t, 1)
	ctx := context.Background()
	p := 3
	grant, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("w1", "alice", p), job("w2", "alice", p)}); err != nil {
		t.Fatalf("enqueue with a live replica: %v", err)
	}
	if n, _ := replica.XLen(ctx, "corral:{p3}:q").Result(); n != 2 {
		t.Fatalf("an acknowledged enqueue is not on the replica (stream length %d)", n)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 1, 10*time.Millisecond)
	if err != nil || len(read[p]) != 1 {
		t.Fatalf("read: %v %v", read, err)
	}
	b := &store.Batch{Done: []string{"w1"}, Acked: []string{read[p][0].StreamID}}
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatalf("commit with a live replica: %v", err)
	}
	if st, _ := replica.HGet(ctx, "corral:{p3}:job:w1", "s").Result(); !strings.HasPrefix(st, "d") {
		t.Fatalf("an acknowledged commit is not on the replica (status %q)", st)
	}

	// The replica stops answering: writes reach the primary only.
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer srv.Signal(syscall.SIGCONT)
	if _, err := s.Enqueue(ctx, []store.Job{job("w3", "alice", p)}); !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("enqueue with the replica stopped: %v, want ErrNotReplicated", err)
	}
	read, _ = s.Read(ctx, map[int]string{p: store.StartID}, 1, 10*time.Millisecond)
	if len(read[p]) != 1 || read[p][0].ID != "w2" {
		t.Fatalf("read %+v, want w2", read[p])
	}
	b = &store.Batch{Done: []string{"w2"}, Acked: []string{read[p][0].StreamID}}
	if err := s.CommitBatch(ctx, p, grant, b); !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("commit with the replica stopped: %v, want ErrNotReplicated", err)
	}
}

// BenchmarkReplicatedCommit is BenchmarkEnqueueAndCommit's cycle against
// a primary with one replica, without and with waiting for it: what
// --redis-wait-replicas costs.
func BenchmarkReplicatedCommit(b *testing.B) {
	for _, wait := range []int{0, 1} {
		b.Run("wait="+strconv.Itoa(wait), func(b *testing.B) {
			s, _, _ := replicated(b, wait)
			enqueueAndCommit(b, s)
		})
	}
}
