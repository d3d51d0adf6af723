package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/sharding"
)

// scriptedPlugin serves donor.donate: every job succeeds, except that
// each id in retryOnce asks for a retry on its first attempt.
type scriptedPlugin struct {
	mu        sync.Mutex
	retryOnce map[string]bool
	seen      []string // job ids in the order the plugin ran them
}

func (f *scriptedPlugin) Handle(_ context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pluginpb.HandleResponse{}
	for _, j := range req.Jobs {
		f.seen = append(f.seen, j.Id)
		o := &pluginpb.Outcome{JobId: j.Id, Status: pluginpb.Outcome_OK}
		if f.retryOnce[j.Id] {
			delete(f.retryOnce, j.Id)
			o.Status, o.Error = pluginpb.Outcome_RETRY, "try again"
		}
		resp.Outcomes = append(resp.Outcomes, o)
	}
	return resp, nil
}

func (f *scriptedPlugin) Handlers() map[string]host.HandlerInfo {
	return map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1"}}
}

func (f *scriptedPlugin) ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// commitLog records what the executor reports committed.
type commitLog struct {
	mu   sync.Mutex
	done []string
}

func (c *commitLog) statesWritten([]store.StateWrite) {}

func (c *commitLog) committed(_ int, _ []store.Job, b *store.Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = append(c.done, b.Done...)
}

func (c *commitLog) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.done)
}

type trustedLease struct{}

func (trustedLease) Valid() bool { return true }

// fencedStore is the real store whose commits are all refused by the fence.
type fencedStore struct{ batchStore }

func (fencedStore) CommitBatch(_ context.Context, p int, grant lease.Grant, _ *store.Batch) error {
	return fmt.Errorf("commit partition %d under %s: %w", p, grant, lease.ErrFenced)
}

// executorSetup starts a Redis, claims the partition of key "k" and
// enqueues jobs j1..jn for it. It returns an executor (not running) that
// owns that partition alone.
func executorSetup(t *testing.T, n int, st func(*store.Store) batchStore, plugin pluginCaller, commits *commitLog) (*executor, int) {
	t.Helper()
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.ID = "w-exec"
	cfg.ReadBlock = 10 * time.Millisecond
	cfg.RetryBackoff, cfg.RetryBackoffMax = 10*time.Millisecond, 20*time.Millisecond
	rs := store.New(rdb, cfg.Store)
	if err := rs.EnsurePartitions(ctx); err != nil {
		t.Fatal(err)
	}
	p := sharding.PartitionOf("k", cfg.Ring.Partitions)
	grant, err := lease.Claim(ctx, rdb, p, "w-exec~1", "")
	if err != nil {
		t.Fatal(err)
	}
	g := newGrants()
	g.add(p, grant)
	var jobs []store.Job
	for i := 1; i <= n; i++ {
		jobs = append(jobs, store.Job{ID: fmt.Sprintf("j%d", i), Handler: "donor.donate", Key: "k", Payload: []byte(`{}`),
			Attempt: 1, SubmittedAt: time.Now().UnixMilli(), Partition: p})
	}
	if _, err := rs.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	return newExecutor(cfg, log, st(rs), plugin, g, trustedLease{}, commits), p
}

// runExecutor runs e until the test ends.
func runExecutor(t *testing.T, e *executor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !ok() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// TestExecutorKeepsKeyOrderThroughRetries: a job of a key that asks for a
// retry is parked and holds its key; the key's later jobs commit after it,
// in the order they were submitted.
func TestExecutorKeepsKeyOrderThroughRetries(t *testing.T) {
	t.Parallel()
	plugin := &scriptedPlugin{retryOnce: map[string]bool{"j2": true}}
	commits := &commitLog{}
	e, _ := executorSetup(t, 5, func(s *store.Store) batchStore { return s }, plugin, commits)
	runExecutor(t, e)
	waitUntil(t, "five jobs committed", func() bool { return len(commits.ids()) == 5 })
	want := []string{"j1", "j2", "j3", "j4", "j5"}
	if got := commits.ids(); !slices.Equal(got, want) {
		t.Fatalf("committed in order %v, want %v (plugin ran %v)", got, want, plugin.ran())
	}
	if n := slices.Index(plugin.ran(), "j2"); n < 0 || !slices.Contains(plugin.ran()[n+1:], "j2") {
		t.Fatalf("j2 was not run again after its retry: plugin ran %v", plugin.ran())
	}
	if committed, fenced := e.counts(); committed != 5 || fenced != 0 {
		t.Fatalf("counts: committed %d fenced %d", committed, fenced)
	}
}

// TestExecutorDropsFencedPartition: a commit the fence refuses stops the
// partition at once; nothing is reported committed.
func TestExecutorDropsFencedPartition(t *testing.T) {
	t.Parallel()
	plugin := &scriptedPlugin{}
	commits := &commitLog{}
	e, p := executorSetup(t, 3, func(s *store.Store) batchStore { return fencedStore{s} }, plugin, commits)
	runExecutor(t, e)
	waitUntil(t, "the fenced partition dropped", func() bool {
		_, ok := e.grants.activeGrant(p)
		return !ok
	})
	if _, fenced := e.counts(); fenced != 1 {
		t.Fatalf("fenced commits %d, want 1", fenced)
	}
	if got := commits.ids(); len(got) != 0 {
		t.Fatalf("a fenced commit was reported committed: %v", got)
	}
}
