package worker

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// gatedPlugin serves donor.donate. A job of hold waits until its gate is
// opened, then gets the outcome given there; a job of retry always asks
// for a retry; every other job succeeds.
type gatedPlugin struct {
	mu    sync.Mutex
	seen  []string
	retry map[string]bool
	hold  map[string]chan pluginpb.Outcome_Status
}

func (g *gatedPlugin) Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	resp := &pluginpb.HandleResponse{}
	for _, j := range req.Jobs {
		g.mu.Lock()
		g.seen = append(g.seen, j.Id)
		gate, retry := g.hold[j.Id], g.retry[j.Id]
		g.mu.Unlock()
		o := &pluginpb.Outcome{JobId: j.Id, Status: pluginpb.Outcome_OK}
		if retry {
			o.Status, o.Error, o.RetryAfterMs = pluginpb.Outcome_RETRY, "not yet", 50
		}
		if gate != nil {
			select {
			case o.Status = <-gate:
				o.Error = "told to"
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		resp.Outcomes = append(resp.Outcomes, o)
	}
	return resp, nil
}

func (g *gatedPlugin) Handlers() map[string]host.HandlerInfo {
	return map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1"}}
}

func (g *gatedPlugin) ran(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, s := range g.seen {
		if s == id {
			n++
		}
	}
	return n
}

func recordStatus(t *testing.T, e *executor, p int, id string) string {
	t.Helper()
	s := storeOf(e).Client().HGet(context.Background(), keys.For(p).Job(id), "s").Val()
	if len(s) > 1 {
		s = s[:1] // the status, before the finish time, attempts and emitted count
	}
	return s
}

// storeOf is the real store of e, under a sweepCounter or not.
func storeOf(e *executor) *store.Store {
	if c, ok := e.store.(*sweepCounter); ok {
		return c.Store
	}
	return e.store.(*store.Store)
}

// sweepCounter is the real store, counting the executor's sweeps for
// cancels it was not told of that have ended.
type sweepCounter struct {
	*store.Store
	sweeps atomic.Int32
}

func (c *sweepCounter) PendingCancels(ctx context.Context, parts []int) (map[int]bool, error) {
	defer c.sweeps.Add(1)
	return c.Store.PendingCancels(ctx, parts)
}

func askCancel(t *testing.T, e *executor, p int, ids ...string) {
	t.Helper()
	if err := e.store.(*store.Store).RequestCancels(context.Background(), p, ids, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.kickCancels(p)
}

// TestExecutorCancelsQueuedJob: a job whose cancel was asked before its
// batch is never sent to the plugin; the key's other jobs run in order.
func TestExecutorCancelsQueuedJob(t *testing.T) {
	t.Parallel()
	plugin := &gatedPlugin{}
	commits := &commitLog{}
	e, p := executorSetup(t, 3, func(s *store.Store) batchStore { return s }, plugin, commits)
	askCancel(t, e, p, "j2")
	runExecutor(t, e)
	waitUntil(t, "j1 and j3 committed", func() bool { return len(commits.ids()) == 2 })
	if got := commits.ids(); !slices.Equal(got, []string{"j1", "j3"}) {
		t.Fatalf("committed %v, want j1 j3", got)
	}
	if plugin.ran("j2") != 0 {
		t.Fatal("the cancelled j2 was sent to the plugin")
	}
	if st := recordStatus(t, e, p, "j2"); st != "c" {
		t.Fatalf("j2's status %q, want cancelled", st)
	}
}

// TestExecutorCancelsRetryingJob: cancelling a job that keeps asking for
// retries ends it, and its key's later jobs then run.
func TestExecutorCancelsRetryingJob(t *testing.T) {
	t.Parallel()
	plugin := &gatedPlugin{retry: map[string]bool{"j1": true}}
	commits := &commitLog{}
	e, p := executorSetup(t, 3, func(s *store.Store) batchStore { return s }, plugin, commits)
	runExecutor(t, e)
	waitUntil(t, "j1 tried twice", func() bool { return plugin.ran("j1") >= 2 })
	if len(commits.ids()) != 0 {
		t.Fatalf("jobs behind the retrying j1 committed: %v", commits.ids())
	}
	askCancel(t, e, p, "j1")
	waitUntil(t, "j2 and j3 committed", func() bool { return len(commits.ids()) == 2 })
	if got := commits.ids(); !slices.Equal(got, []string{"j2", "j3"}) {
		t.Fatalf("committed %v, want j2 j3", got)
	}
	if st := recordStatus(t, e, p, "j1"); st != "c" {
		t.Fatalf("j1's status %q, want cancelled", st)
	}
	sts, _ := e.store.(*store.Store).StatusesIn(context.Background(), []string{"j1"}, []int{p})
	if sts[0].Attempts < 2 || sts[0].Error == "" {
		t.Fatalf("j1's record %+v, want its attempts and last error", sts[0])
	}
}

// TestExecutorCancelOfARunningJob: a cancel asked while the job's attempt
// runs waits for it: an attempt that commits means the job ran; one that
// asks for a retry is the last, the retry is cancelled.
func TestExecutorCancelOfARunningJob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		outcome pluginpb.Outcome_Status
		want    string
	}{{pluginpb.Outcome_OK, "d"}, {pluginpb.Outcome_RETRY, "c"}} {
		t.Run(tc.outcome.String(), func(t *testing.T) {
			t.Parallel()
			gate := make(chan pluginpb.Outcome_Status, 1)
			plugin := &gatedPlugin{hold: map[string]chan pluginpb.Outcome_Status{"j1": gate}}
			commits := &commitLog{}
			e, p := executorSetup(t, 1, func(s *store.Store) batchStore { return s }, plugin, commits)
			runExecutor(t, e)
			waitUntil(t, "j1 running", func() bool { return len(e.running.jobs(nil)) == 1 })
			askCancel(t, e, p, "j1")
			time.Sleep(30 * time.Millisecond) // rounds go by; the batch in flight is not touched
			gate <- tc.outcome
			waitUntil(t, "j1 finished", func() bool { return recordStatus(t, e, p, "j1") != "" })
			if st := recordStatus(t, e, p, "j1"); st != tc.want {
				t.Fatalf("j1's status %q, want %q", st, tc.want)
			}
			waitUntil(t, "the cancel settled", func() bool {
				n, _ := e.store.(*store.Store).Client().ZCard(context.Background(), keys.For(p).Cancels()).Result()
				return n == 0
			})
			if plugin.ran("j1") != 1 {
				t.Fatalf("j1 ran %d times, want once", plugin.ran("j1"))
			}
			if len(e.running.jobs(nil)) != 0 {
				t.Fatalf("still running: %v", e.running.jobs(nil))
			}
		})
	}
}

// TestExecutorFindsCancelsItWasNotToldOf: a cancel recorded in Redis
// alone (asked through a worker that could not reach this one) is found
// by the executor's sweep and applied.
func TestExecutorFindsCancelsItWasNotToldOf(t *testing.T) {
	t.Parallel()
	plugin := &gatedPlugin{}
	commits := &commitLog{}
	sweeps := &sweepCounter{}
	e, p := executorSetup(t, 0, func(s *store.Store) batchStore { sweeps.Store = s; return sweeps }, plugin, commits)
	rs := sweeps.Store
	later := store.Job{ID: "d1", Handler: "donor.donate", Key: "k", Payload: []byte(`{}`), Attempt: 1,
		SubmittedAt: time.Now().UnixMilli(), NotBefore: time.Now().Add(time.Hour).UnixMilli(), Partition: p}
	if _, err := rs.Enqueue(context.Background(), []store.Job{later}); err != nil {
		t.Fatal(err)
	}
	runExecutor(t, e)
	// The executor's first sweep, at its start, is over: the cancel is found
	// by a later one.
	waitUntil(t, "the first sweep for cancels", func() bool { return sweeps.sweeps.Load() > 0 })
	if err := rs.RequestCancels(context.Background(), p, []string{"d1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the delayed d1 cancelled", func() bool { return recordStatus(t, e, p, "d1") == "c" })
	if n, _ := rs.Client().ZCard(context.Background(), keys.For(p).Delayed()).Result(); n != 0 {
		t.Fatalf("%d jobs still delayed", n)
	}
}

// TestExecutorAppliesManyCancels: more cancels than one batch loads are
// applied by the batches that follow at once, not a sweep later.
func TestExecutorAppliesManyCancels(t *testing.T) {
	t.Parallel()
	plugin := &gatedPlugin{}
	commits := &commitLog{}
	e, p := executorSetup(t, 0, func(s *store.Store) batchStore { return s }, plugin, commits)
	e.cfg.BatchSize = 4
	rs := e.store.(*store.Store)
	var jobs []store.Job
	var ids []string
	for i := range 20 {
		id := "d" + string(rune('a'+i))
		ids = append(ids, id)
		jobs = append(jobs, store.Job{ID: id, Handler: "donor.donate", Key: "k", Payload: []byte(`{}`), Attempt: 1,
			SubmittedAt: time.Now().UnixMilli(), NotBefore: time.Now().Add(time.Hour).UnixMilli(), Partition: p})
	}
	if _, err := rs.Enqueue(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	runExecutor(t, e)
	start := time.Now()
	askCancel(t, e, p, ids...)
	waitUntil(t, "20 delayed jobs cancelled", func() bool {
		n, _ := rs.Client().ZCard(context.Background(), keys.For(p).Delayed()).Result()
		return n == 0
	})
	if el := time.Since(start); el > cancelSweepEvery {
		t.Errorf("20 cancels in batches of 4 took %v, more than a sweep", el)
	}
	for _, id := range ids {
		if st := recordStatus(t, e, p, id); st != "c" {
			t.Errorf("%s's status %q", id, st)
		}
	}
}
