package worker

import (
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// TestBuildBatch: per key, jobs apply in order until one must be retried;
// that one holds its key and the key's later jobs wait behind it; a dead
// job lets its key move on; a held key's stream jobs wait at its back.
func TestBuildBatch(t *testing.T) {
	t.Parallel()
	stream := []store.Job{
		{ID: "a", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "2-0"},
		{ID: "c", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "3-0"},
		{ID: "d", Handler: "donor.donate", Key: "x", Attempt: 3, StreamID: "4-0"},
		{ID: "e", Handler: "donor.donate", Key: "x", Attempt: 1, StreamID: "5-0"},
		{ID: "old", Handler: "donor.donate", Key: "x", Attempt: 1, StreamID: "6-0"},
		{ID: "f", Handler: "donor.donate", Key: "held", Attempt: 1, StreamID: "7-0"},
	}
	snap := store.Snapshot{Finished: map[string]bool{"old": true}, Held: map[string]bool{"held": true}}
	wk := planWork(nil, stream, snap)
	run := wk.runnable()
	if len(run) != 5 {
		t.Fatalf("runnable %d jobs, want 5 (finished and held left out)", len(run))
	}
	req := buildRequest(run, snap, plugins.EntityType)
	if len(req.Entities) != 2 {
		t.Fatalf("request has %d entities, want 2", len(req.Entities))
	}
	out := map[string]*pluginpb.Outcome{
		"a": {JobId: "a", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte("1"), Emits: []*pluginpb.Emit{{Handler: "campaign.credit", Key: "c1"}}},
		"b": {JobId: "b", Status: pluginpb.Outcome_RETRY, Error: "later", RetryAfterMs: 5000},
		"c": {JobId: "c", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte("3"), Result: []byte(`{"ok":true}`)},
		"d": {JobId: "d", Status: pluginpb.Outcome_RETRY, Error: "boom"},
		"e": {JobId: "e", Status: pluginpb.Outcome_OK, Result: []byte(`{"ok":true}`)},
	}
	now := time.UnixMilli(1_000_000)
	rp := retryPolicy{maxAttempts: func(store.Job) int { return 3 }, base: time.Second, max: time.Minute, now: now,
		jitter: func(int64) int64 { return 0 }}
	b, err := buildBatch(wk, out, rp, plugins.EntityType)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Acked) != 7 {
		t.Errorf("acked %d stream entries, want all 7", len(b.Acked))
	}
	if len(b.Done) != 2 || b.Done[0] != "a" || b.Done[1] != "e" {
		t.Errorf("done %v, want [a e]: c must wait behind b", b.Done)
	}
	if len(b.States) != 1 || string(b.States[0].Value) != "1" {
		t.Errorf("states %+v: want k's state after a only", b.States)
	}
	if len(b.Emits) != 1 || b.Emits[0].ID != "a~0" {
		t.Errorf("emits %+v: want one with the derived id a~0", b.Emits)
	}
	if len(b.Results) != 1 || b.Results[0].JobID != "e" {
		t.Errorf("results %+v", b.Results)
	}
	if len(b.Dead) != 1 || b.Dead[0].Job.ID != "d" || len(b.Dead[0].Job.Errors) != 1 {
		t.Errorf("dead %+v: want d with its error history", b.Dead)
	}
	plans := map[string]store.KeyPlan{}
	for _, kp := range b.Keys {
		plans[kp.Key] = kp
	}
	k := plans["k"]
	if k.Park == nil || k.Park.ID != "b" || k.Park.Attempt != 2 || k.Park.NotBefore != now.UnixMilli()+5000 {
		t.Errorf("k parks %+v, want b at attempt 2 after its retry-after", k.Park)
	}
	if len(k.Front) != 1 || k.Front[0].ID != "c" {
		t.Errorf("k front %+v, want c", k.Front)
	}
	if h := plans["held"]; len(h.Back) != 1 || h.Back[0].ID != "f" || h.Park != nil || h.Next {
		t.Errorf("held key plan %+v, want f at the back", h)
	}
	if _, ok := plans["x"]; ok {
		t.Errorf("x needs no hold: %+v", plans["x"])
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	rp := retryPolicy{base: 100 * time.Millisecond, max: time.Second, jitter: func(n int64) int64 { return n - 1 }}
	prev := time.Duration(0)
	for a := 1; a <= 8; a++ {
		d := rp.delay(a, 0)
		if d < prev || d > time.Second {
			t.Errorf("attempt %d: delay %v after %v, cap 1s", a, d, prev)
		}
		prev = d
	}
}

// staticHandlers declares handlers and runs nothing.
type staticHandlers struct {
	handlersAPI // nil: only Handlers is called
	hs          map[string]host.HandlerInfo
}

type handlersAPI = Handlers

func (s staticHandlers) Handlers() map[string]host.HandlerInfo { return s.hs }

// TestJobLimits: a submitter's timeout can only shorten its handler's, and
// its max attempts replace the handler's.
func TestJobLimits(t *testing.T) {
	t.Parallel()
	w := &executor{cfg: DefaultConfig(), plugins: staticHandlers{hs: map[string]host.HandlerInfo{
		"a.slow": {Timeout: 5 * time.Second, MaxAttempts: 7},
		"a.open": {},
	}}}
	for _, tc := range []struct {
		jobs []store.Job
		want time.Duration
	}{
		{[]store.Job{{Handler: "a.slow"}}, 0},
		{[]store.Job{{Handler: "a.slow", TimeoutMs: 200}}, 200 * time.Millisecond},
		{[]store.Job{{Handler: "a.slow", TimeoutMs: 200}, {Handler: "a.slow"}}, 5 * time.Second},
		{[]store.Job{{Handler: "a.slow", TimeoutMs: 9000}}, 5 * time.Second},
		{[]store.Job{{Handler: "a.open", TimeoutMs: 300}, {Handler: "a.open"}}, 0},
	} {
		if got := callTimeout(tc.jobs, w.plugins.Handlers()); got != tc.want {
			t.Errorf("callTimeout(%+v) = %v, want %v", tc.jobs, got, tc.want)
		}
	}
	if got := w.jobMaxAttempts(store.Job{Handler: "a.slow"}); got != 7 {
		t.Errorf("handler's max attempts: %d", got)
	}
	if got := w.jobMaxAttempts(store.Job{Handler: "a.slow", MaxAttempts: 2}); got != 2 {
		t.Errorf("submitter's max attempts: %d", got)
	}
	if got := w.jobMaxAttempts(store.Job{Handler: "a.open"}); got != w.cfg.MaxAttempts {
		t.Errorf("default max attempts: %d", got)
	}
	if err := validateOptions(3, 9000, 100, 5*time.Second); err == nil {
		t.Error("a timeout over the handler's was accepted")
	}
	if err := validateOptions(101, 0, 100, 0); err == nil {
		t.Error("max attempts over the limit accepted")
	}
}
