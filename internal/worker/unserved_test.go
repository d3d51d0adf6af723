package worker

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// testPolicy retries after a second, gives up after 3 attempts, and lets
// a job wait a minute for its handler.
func testPolicy(now time.Time) retryPolicy {
	return retryPolicy{maxAttempts: func(store.Job) int { return 3 }, base: time.Second, max: time.Minute, now: now,
		jitter: func(int64) int64 { return 0 }, handlerWait: time.Minute}
}

// TestBuildBatchWaitsForHandler: a job whose handler this worker does not
// serve is parked without spending an attempt, holding its key, and is
// dead-lettered only once it has waited the policy's handlerWait.
func TestBuildBatchWaitsForHandler(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(10_000_000)
	stream := []store.Job{
		{ID: "a", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "order.reserve", Key: "k", Attempt: 1, StreamID: "2-0"},
		{ID: "c", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "3-0"},
	}
	wk := planWork(nil, stream, store.Snapshot{})
	run, outcomes := unserved(wk, map[string]host.HandlerInfo{"donor.donate": {}})
	if ids := jobIDs(run); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("ran %v, want only a: b is not served here and c waits behind it", ids)
	}
	outcomes["a"] = &pluginpb.Outcome{JobId: "a", Status: pluginpb.Outcome_OK}
	b, err := buildBatch(wk, outcomes, testPolicy(now), plugins.EntityType)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Dead) != 0 || !slices.Equal(b.Done, []string{"a"}) {
		t.Fatalf("done %v, dead %+v; want a done and nothing dead", b.Done, b.Dead)
	}
	if len(b.Keys) != 1 || b.Keys[0].Park == nil || b.Keys[0].Park.ID != "b" {
		t.Fatalf("key plans %+v, want b parked", b.Keys)
	}
	parked := *b.Keys[0].Park
	if parked.Attempt != 1 || parked.WaitingSince != now.UnixMilli() || parked.NotBefore <= now.UnixMilli() || len(parked.Errors) != 0 {
		t.Fatalf("parked %+v: want attempt 1, waiting since now, due later, no error", parked)
	}
	if len(b.Keys[0].Front) != 1 || b.Keys[0].Front[0].ID != "c" {
		t.Fatalf("front %+v, want c behind b", b.Keys[0].Front)
	}
	if len(wk.waiting) != 1 || len(b.Retries) != 0 {
		t.Fatalf("waiting %v, retries %v: a wait is not a retry", wk.waiting, b.Retries)
	}

	// Still unserved later: parked again, the same attempt, until the bound.
	again := func(at time.Time) *store.Batch {
		t.Helper()
		j := parked
		j.StreamID = ""
		wk := planWork([]store.KeyRun{{Key: "k", Jobs: []store.Job{j}}}, nil, store.Snapshot{})
		_, outcomes := unserved(wk, map[string]host.HandlerInfo{"donor.donate": {}})
		b, err := buildBatch(wk, outcomes, testPolicy(at), plugins.EntityType)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := again(now.Add(59 * time.Second)); len(b.Dead) != 0 || b.Keys[0].Park.Attempt != 1 || b.Keys[0].Park.WaitingSince != now.UnixMilli() {
		t.Fatalf("after 59s: dead %+v, parked %+v", b.Dead, b.Keys[0].Park)
	}
	b = again(now.Add(time.Minute))
	if len(b.Dead) != 1 || b.Dead[0].Job.Attempt != 1 || !strings.Contains(b.Dead[0].Error, `"order.reserve"`) ||
		!strings.Contains(b.Dead[0].Error, "--unknown-handler-wait") {
		t.Fatalf("after the bound: dead %+v, want b dead-lettered at attempt 1 naming its handler and the flag", b.Dead)
	}
}

// TestBuildBatchRefusesEmitToUnknownHandler: an OK outcome that emits to a
// handler no worker serves fails the attempt: no state, result or emitted
// job of it commits, the job is retried with the reason, and dead-lettered
// with it once its attempts are spent.
func TestBuildBatchRefusesEmitToUnknownHandler(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(10_000_000)
	e := &executor{cfg: DefaultConfig(), plugins: staticHandlers{hs: map[string]host.HandlerInfo{
		"order.place": {}, "order.reserve": {}}}}
	typo := func(id string) *pluginpb.Outcome {
		return &pluginpb.Outcome{JobId: id, Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte(`{"n":1}`),
			Result: []byte(`"ok"`), Emits: []*pluginpb.Emit{
				{Handler: "order.reserve", Key: "o1"}, {Handler: "order.reservd", Key: "o1"}}}
	}
	for _, attempt := range []int{1, 3} {
		stream := []store.Job{{ID: "p1", Handler: "order.place", Key: "k", Attempt: attempt, StreamID: "1-0"}}
		wk := planWork(nil, stream, store.Snapshot{})
		rp := e.batchPolicy(now, e.plugins.Handlers())
		rp.maxAttempts = func(store.Job) int { return 3 }
		b, err := buildBatch(wk, map[string]*pluginpb.Outcome{"p1": typo("p1")}, rp, plugins.EntityType)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Done) != 0 || len(b.States) != 0 || len(b.Results) != 0 || len(b.Emits) != 0 {
			t.Fatalf("attempt %d committed done %v states %v results %v emits %v", attempt, b.Done, b.States, b.Results, b.Emits)
		}
		var why string
		switch attempt {
		case 1:
			if len(b.Retries) != 1 || b.Retries[0].Attempt != 2 {
				t.Fatalf("attempt 1: retries %+v, want p1 again at attempt 2", b.Retries)
			}
			why = b.Retries[0].Errors[0]
		case 3:
			if len(b.Dead) != 1 {
				t.Fatalf("attempt 3: dead %+v, want p1", b.Dead)
			}
			why = b.Dead[0].Error
		}
		if !strings.Contains(why, `"order.reservd"`) || !strings.Contains(why, "p1") {
			t.Fatalf("attempt %d: reason %q does not name the handler and the emitting job", attempt, why)
		}
	}
}

// TestEmitToHandlerOfAnotherWorker: an emit to a handler only another
// worker serves is accepted; one that no worker serves is refused.
func TestEmitToHandlerOfAnotherWorker(t *testing.T) {
	t.Parallel()
	view := newMembership(Config{ID: "w1"}, slog.New(slog.DiscardHandler))
	meta, err := localSet(map[string]host.HandlerInfo{"bucket.credit": {Plugin: "chaos", Version: "1"}}).Meta()
	if err != nil {
		t.Fatal(err)
	}
	view.handlers.Store(readHandlers(membersWithMeta(map[string]map[string]string{"w2": meta})))
	local := map[string]host.HandlerInfo{"account.add": {Plugin: "chaos", Version: "1"}}
	e := &executor{cfg: DefaultConfig(), plugins: staticHandlers{hs: local},
		catalog: &handlerCatalog{self: "w1", local: staticHandlers{hs: local}, view: view}}
	rp := e.batchPolicy(time.Now(), local)
	if err := rp.checkEmit("p", "bucket.credit"); err != nil {
		t.Fatalf("emit to a handler w2 serves: %v", err)
	}
	if err := rp.checkEmit("p", "bucket.credt"); err == nil || !strings.Contains(err.Error(), "bucket.credit") {
		t.Fatalf("emit to a handler nobody serves: %v, want refused, listing the handlers served", err)
	}
}

func TestGaveUpAfterOneAttempt(t *testing.T) {
	t.Parallel()
	stream := []store.Job{{ID: "x", Handler: "a.b", Key: "k", Attempt: 1, StreamID: "1-0"}}
	rp := testPolicy(time.Now())
	rp.maxAttempts = func(store.Job) int { return 1 }
	b, err := buildBatch(planWork(nil, stream, store.Snapshot{}),
		map[string]*pluginpb.Outcome{"x": {JobId: "x", Status: pluginpb.Outcome_RETRY, Error: "boom"}}, rp, plugins.EntityType)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Dead) != 1 || b.Dead[0].Error != "gave up after 1 attempt: boom" {
		t.Fatalf("dead %+v, want %q", b.Dead, "gave up after 1 attempt: boom")
	}
}

func jobIDs(jobs []store.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// servingPlugin runs every job OK and serves the handlers in its table,
// which a test may change (a rolling upgrade).
type servingPlugin struct {
	mu   sync.Mutex
	hs   map[string]host.HandlerInfo
	seen []string
}

func (f *servingPlugin) Handle(_ context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pluginpb.HandleResponse{}
	for _, j := range req.Jobs {
		f.seen = append(f.seen, j.Id)
		resp.Outcomes = append(resp.Outcomes, &pluginpb.Outcome{JobId: j.Id, Status: pluginpb.Outcome_OK})
	}
	return resp, nil
}

func (f *servingPlugin) Handlers() map[string]host.HandlerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.hs)
}

func (f *servingPlugin) serve(h string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hs[h] = host.HandlerInfo{Plugin: "orders", Version: "2"}
}

func (f *servingPlugin) ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func membersWithMeta(metas map[string]map[string]string) []discovery.Member {
	var ms []discovery.Member
	for id, meta := range metas {
		ms = append(ms, discovery.Member{ID: id, Address: id + ":1", Meta: meta})
	}
	return ms
}

// TestExecutorWaitsForHandler runs the executor on a real Redis: a job
// whose handler this worker does not serve is not run and not failed; it
// and the later job of its key wait, and run, in order and at their first
// attempt, once the worker serves the handler (a rolling upgrade reached
// it). With a short --unknown-handler-wait, such a job is dead-lettered
// with the reason and its key moves on.
func TestExecutorWaitsForHandler(t *testing.T) {
	t.Parallel()
	for _, upgrade := range []bool{true, false} {
		plugin := &servingPlugin{hs: map[string]host.HandlerInfo{"order.place": {Plugin: "orders", Version: "1"}}}
		commits := &commitLog{}
		parks := &parkCounter{}
		e, p := executorSetup(t, 0, func(s *store.Store) batchStore { parks.batchStore = s; return parks }, plugin, commits)
		e.cfg.UnknownHandlerWait = time.Minute
		if !upgrade {
			e.cfg.UnknownHandlerWait = 300 * time.Millisecond
		}
		rs := parks.batchStore.(*store.Store)
		ctx := context.Background()
		now := time.Now().UnixMilli()
		jobs := []store.Job{
			{ID: "new", Handler: "order.reserve", Key: "k", Payload: []byte(`{}`), Attempt: 1, SubmittedAt: now, Partition: p},
			{ID: "after", Handler: "order.place", Key: "k", Payload: []byte(`{}`), Attempt: 1, SubmittedAt: now, Partition: p},
		}
		if _, err := rs.Enqueue(ctx, jobs); err != nil {
			t.Fatal(err)
		}
		runExecutor(t, e)
		status := func(id string) store.JobStatus {
			st, err := rs.StatusesIn(ctx, []string{id}, []int{p})
			if err != nil {
				t.Fatal(err)
			}
			return st[0]
		}
		if upgrade {
			// Several rechecks pass; nothing runs, nothing fails.
			waitUntil(t, "three rechecks", func() bool { return parks.parked("new") >= 3 })
			if ran := plugin.ran(); len(ran) != 0 || len(commits.ids()) != 0 {
				t.Fatalf("while waiting: plugin ran %v, committed %v; want nothing", ran, commits.ids())
			}
			if st := status("new"); st.Finished || st.Dead {
				t.Fatalf("the job waiting for its handler ended: %+v", st)
			}
			plugin.serve("order.reserve")
			waitUntil(t, "both jobs committed", func() bool { return len(commits.ids()) == 2 })
			if got := commits.ids(); !slices.Equal(got, []string{"new", "after"}) {
				t.Fatalf("committed %v, want [new after]", got)
			}
			if st := status("new"); st.Attempts != 1 {
				t.Fatalf("the job that waited took %d attempts, want 1: waiting spends none", st.Attempts)
			}
			continue
		}
		waitUntil(t, "the unserved job dead-lettered and the next committed", func() bool {
			return status("new").Dead && slices.Contains(commits.ids(), "after")
		})
		dead, err := rs.DeadLetters(ctx, []string{"new"})
		if err != nil || len(dead) != 1 {
			t.Fatalf("dead letters %+v, %v", dead, err)
		}
		if d := dead[0]; d.Attempts != 1 || !strings.Contains(strings.Join(d.Errors, " "), "--unknown-handler-wait") {
			t.Fatalf("dead letter %+v: want attempt 1, the reason naming --unknown-handler-wait", d)
		}
		if slices.Contains(plugin.ran(), "new") {
			t.Fatal("the plugin ran a job whose handler it does not serve")
		}
	}
}

// parkCounter is the real store, counting the commits that park each job.
type parkCounter struct {
	batchStore
	mu sync.Mutex
	n  map[string]int
}

func (c *parkCounter) CommitBatch(ctx context.Context, p int, grant lease.Grant, b *store.Batch) error {
	err := c.batchStore.CommitBatch(ctx, p, grant, b)
	if err == nil {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[string]int{}
		}
		for _, kp := range b.Keys {
			if kp.Park != nil {
				c.n[kp.Park.ID]++
			}
		}
		c.mu.Unlock()
	}
	return err
}

func (c *parkCounter) parked(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}
