package worker

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// fakeFlowStore grants slots and tokens from plain counters.
type fakeFlowStore struct {
	settings map[string]store.FlowSettings
	held     map[string]int // slots held per handler
	tokens   map[string]int // tokens left per handler
	calls    int
}

func (f *fakeFlowStore) FlowSettings(context.Context) (map[string]store.FlowSettings, error) {
	return f.settings, nil
}

func (f *fakeFlowStore) AcquireSlots(_ context.Context, h string, limit, n int, holder string, _ time.Duration) ([]string, error) {
	f.calls++
	var out []string
	for i := 0; i < n && f.held[h] < limit; i++ {
		f.held[h]++
		out = append(out, fmt.Sprintf("%s:%d", holder, i))
	}
	return out, nil
}

func (f *fakeFlowStore) ReleaseSlots(_ context.Context, h string, slots []string) error {
	f.held[h] -= len(slots)
	return nil
}

func (f *fakeFlowStore) RenewSlots(_ context.Context, _ string, slots []string, _ time.Duration) (int, error) {
	return len(slots), nil
}

func (f *fakeFlowStore) TakeTokens(_ context.Context, h string, _ float64, _, n int) (int, time.Duration, error) {
	f.calls++
	got := min(n, f.tokens[h])
	f.tokens[h] -= got
	return got, 10 * time.Millisecond, nil
}

func (f *fakeFlowStore) WakeParked(context.Context, int, map[string]bool, int64) (int, error) {
	return 0, nil
}

func flowJobs(spec ...string) []store.Job {
	var out []store.Job
	for i := 0; i+1 < len(spec); i += 2 {
		out = append(out, store.Job{ID: fmt.Sprintf("j%d", i/2), Handler: spec[i], Key: spec[i+1], Attempt: 1})
	}
	return out
}

func runIDs(js []store.Job) string {
	s := ""
	for _, j := range js {
		s += j.ID + " "
	}
	return s
}

// TestAdmitKeepsKeyOrderAndOtherHandlers: with a concurrency limit of 2,
// two jobs of the handler run, the next one waits and so does its key's
// later job, even of another handler; other handlers and keys run; the
// slots not used go back.
func TestAdmitKeepsKeyOrderAndOtherHandlers(t *testing.T) {
	t.Parallel()
	fs := &fakeFlowStore{settings: map[string]store.FlowSettings{"mail.send": {Concurrency: 2}}, held: map[string]int{}, tokens: map[string]int{}}
	f := newFlowControl(slog.Default(), fs, nil, nil, "w~1", time.Minute)
	if err := f.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	jobs := flowJobs("mail.send", "a", "mail.send", "b", "mail.send", "c", "donor.donate", "c", "donor.donate", "d", "mail.send", "e")
	now := time.Now()
	a, err := f.admit(context.Background(), jobs, map[string]host.HandlerInfo{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := runIDs(a.run); got != "j0 j1 j4 " {
		t.Fatalf("run %q, want j0 j1 j4", got)
	}
	if len(a.wait) != 2 || a.wait["j2"] <= now.UnixMilli() || a.wait["j5"] == 0 {
		t.Fatalf("waiting %v, want j2 and j5 later than now", a.wait)
	}
	if fs.held["mail.send"] != 2 || len(a.slots["mail.send"]) != 2 {
		t.Fatalf("held %d, admission keeps %v", fs.held["mail.send"], a.slots)
	}
	f.release(context.Background(), a)
	if fs.held["mail.send"] != 0 {
		t.Fatalf("held %d after release", fs.held["mail.send"])
	}
}

// TestAdmitPausedAndRate: a paused handler's jobs all wait, without asking
// Redis; a rate-limited one runs as many as the bucket gives.
func TestAdmitPausedAndRate(t *testing.T) {
	t.Parallel()
	fs := &fakeFlowStore{settings: map[string]store.FlowSettings{"mail.send": {Paused: true}, "sms.send": {Rate: 10}},
		held: map[string]int{}, tokens: map[string]int{"sms.send": 2}}
	f := newFlowControl(slog.Default(), fs, nil, nil, "w~1", time.Minute)
	f.refresh(context.Background())
	jobs := flowJobs("mail.send", "a", "sms.send", "b", "sms.send", "c", "sms.send", "d")
	now := time.Now()
	a, _ := f.admit(context.Background(), jobs, nil, now)
	if got := runIDs(a.run); got != "j1 j2 " {
		t.Fatalf("run %q, want j1 j2", got)
	}
	if a.wait["j0"] < now.Add(pauseRecheck).UnixMilli() || a.wait["j3"] == 0 || a.wait["j3"] > now.Add(time.Second).UnixMilli() {
		t.Fatalf("waits %v", a.wait)
	}
	if fs.calls != 1 {
		t.Fatalf("%d calls to Redis, want 1 (the bucket)", fs.calls)
	}
}

// TestAdmitIdleTouchesNothing: with nothing paused or limited, a batch
// runs as it is and Redis is not asked.
func TestAdmitIdleTouchesNothing(t *testing.T) {
	t.Parallel()
	fs := &fakeFlowStore{settings: map[string]store.FlowSettings{}}
	f := newFlowControl(slog.Default(), fs, nil, nil, "w~1", time.Minute)
	f.refresh(context.Background())
	jobs := flowJobs("mail.send", "a", "sms.send", "b")
	a, _ := f.admit(context.Background(), jobs, map[string]host.HandlerInfo{"mail.send": {}}, time.Now())
	if len(a.run) != 2 || fs.calls != 0 {
		t.Fatalf("run %d, %d calls", len(a.run), fs.calls)
	}
	// A declared concurrency is a limit.
	fs.held = map[string]int{}
	a, _ = f.admit(context.Background(), jobs, map[string]host.HandlerInfo{"mail.send": {Concurrency: 1}}, time.Now())
	f.release(context.Background(), a)
	if len(a.run) != 2 || fs.calls != 1 {
		t.Fatalf("declared: run %d, %d calls", len(a.run), fs.calls)
	}
}

// TestBuildBatchParksHeldBackJob: a job flow control held back is parked
// on its key at the time it names, its attempt not spent, its key's later
// jobs waiting behind it.
func TestBuildBatchParksHeldBackJob(t *testing.T) {
	t.Parallel()
	stream := []store.Job{
		{ID: "a", Handler: "mail.send", Key: "k", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "2-0"},
		{ID: "c", Handler: "donor.donate", Key: "x", Attempt: 1, StreamID: "3-0"},
	}
	wk := planWork(nil, stream, store.Snapshot{})
	until := time.Now().Add(time.Minute).UnixMilli()
	wk.flowUntil = map[string]int64{"a": until}
	out := map[string]*pluginpb.Outcome{"a": waitFlow, "c": {JobId: "c", Status: pluginpb.Outcome_OK}}
	b, err := buildBatch(wk, out, retryPolicy{maxAttempts: func(store.Job) int { return 3 }, now: time.Now(), handlerWait: time.Minute},
		func(string) string { return "e" })
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Done) != 1 || b.Done[0] != "c" || len(b.Retries) != 0 || len(b.Dead) != 0 {
		t.Fatalf("batch %+v", b)
	}
	if len(b.Keys) != 1 || b.Keys[0].Park == nil || b.Keys[0].Park.ID != "a" || b.Keys[0].Park.Attempt != 1 ||
		b.Keys[0].Park.NotBefore != until || len(b.Keys[0].Front) != 1 || b.Keys[0].Front[0].ID != "b" {
		t.Fatalf("key plan %+v", b.Keys)
	}
}
