package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
	"github.com/hashicorp/consul/api"
)

// testLogger sends slog output to t.Log until the test ends, so a watch
// goroutine still winding down cannot log into a finished test.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)

// setup starts a Consul dev agent for one test.
func setup(t *testing.T) *testenv.Consul {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	t.Parallel()
	return testenv.StartConsul(t)
}

func newConsul(t *testing.T, addr string) *Consul {
	t.Helper()
	c, err := NewConsul(ConsulConfig{Address: addr, Logger: testLogger(t), WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// watcher reads a Watch channel and checks that every snapshot differs
// from the one before it, but for one marked Recovered.
type watcher struct {
	t    *testing.T
	ch   <-chan Snapshot
	last *Snapshot
}

func watch(t *testing.T, c *Consul) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &watcher{t: t, ch: c.Watch(ctx)}
}

// waitFor reads snapshots until one satisfies ok, failing after a deadline.
func (w *watcher) waitFor(what string, ok func([]Member) bool) Snapshot {
	w.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case s, open := <-w.ch:
			if !open {
				w.t.Fatalf("watch closed while waiting for %s", what)
			}
			// A Recovered snapshot is sent even when the members did not
			// change: it tells the worker that Consul was away.
			if w.last != nil && !s.Recovered && sameMembers(w.last.Members, s.Members) {
				w.t.Errorf("watch emitted an unchanged member set %v", ids(s.Members))
			}
			w.last = &s
			if ok(s.Members) {
				return s
			}
		case <-deadline:
			var last []string
			if w.last != nil {
				last = ids(w.last.Members)
			}
			w.t.Fatalf("no snapshot with %s within 30s; last members %v", what, last)
		}
	}
}

func has(id string) func([]Member) bool {
	return func(ms []Member) bool {
		for _, m := range ms {
			if m.ID == id {
				return true
			}
		}
		return false
	}
}

func not(f func([]Member) bool) func([]Member) bool {
	return func(ms []Member) bool { return !f(ms) }
}

// eventually polls cond until it holds, failing after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func healthyIDs(t *testing.T, c *Consul) []string {
	t.Helper()
	ms, err := c.Healthy(context.Background())
	if err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	return ids(ms)
}

func TestRegisterPassingWatchDeregister(t *testing.T) {
	agent := setup(t)
	ctx := context.Background()
	w1, w2 := newConsul(t, agent.Addr), newConsul(t, agent.Addr)
	wt := watch(t, w1)
	if first := wt.waitFor("the first snapshot", func([]Member) bool { return true }); len(first.Members) != 0 {
		t.Fatalf("first snapshot of an empty agent: %v", first.Members)
	}

	reg := Registration{ID: "w1", Address: "127.0.0.1", Port: 7101, CheckTTL: time.Minute,
		Meta: map[string]string{"partitions": "64"}, Tags: []string{"corral"}}
	if err := w1.Register(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if got := healthyIDs(t, w1); len(got) != 0 {
		t.Fatalf("registered but never reported: healthy %v, want none", got)
	}
	if err := w1.SetHealth(ctx, StatusPassing, "owns 0 partitions"); err != nil {
		t.Fatal(err)
	}
	s := wt.waitFor("w1", has("w1"))
	if m := s.Members[0]; m.Address != "127.0.0.1:7101" || m.Meta["partitions"] != "64" {
		t.Fatalf("member %+v, want address 127.0.0.1:7101 and meta partitions=64", m)
	}
	if s.Index == 0 {
		t.Fatal("snapshot without a Consul index")
	}

	// A second worker on the same agent; members come sorted by ID.
	if err := w2.Register(ctx, Registration{ID: "w0", Address: "127.0.0.1", Port: 7100, CheckTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Output changes alone must not produce snapshots (waitFor checks).
	for i := range 3 {
		if err := w1.SetHealth(ctx, StatusPassing, "tick "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	wt.waitFor("w0 and w1", func(ms []Member) bool { return sameIDs(ms, "w0", "w1") })

	// Warning is not passing: out of the membership, and back.
	if err := w1.SetHealth(ctx, StatusWarning, "plugin restarting"); err != nil {
		t.Fatal(err)
	}
	wt.waitFor("w1 gone on warning", not(has("w1")))
	if err := w1.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	wt.waitFor("w1 back", has("w1"))

	if err := w1.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	wt.waitFor("w1 deregistered", func(ms []Member) bool { return sameIDs(ms, "w0") })
	if err := w1.Deregister(ctx); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
	if err := w1.SetHealth(ctx, StatusPassing, "ok"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("SetHealth after Deregister: %v, want ErrNotRegistered", err)
	}
	if got := healthyIDs(t, w2); !equalIDs(got, "w0") {
		t.Fatalf("healthy after deregister %v, want [w0]", got)
	}
}

// TestRegisterAgainChangesMetaKeepsHealth: a worker that registers again
// with new meta (its plugins were reloaded and serve other handlers) stays
// a passing member, and its peers' watch sees the new meta.
func TestRegisterAgainChangesMetaKeepsHealth(t *testing.T) {
	agent := setup(t)
	ctx := context.Background()
	w1 := newConsul(t, agent.Addr)
	wt := watch(t, w1)
	reg := Registration{ID: "w1", Address: "127.0.0.1", Port: 7101, CheckTTL: time.Minute,
		Meta: map[string]string{"plugin-donations": "donations@0.1.0 donor.donate"}}
	if err := w1.Register(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if err := w1.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	wt.waitFor("w1", has("w1"))
	reg.Meta = map[string]string{"plugin-donations": "donations@0.2.0 donor.donate,donor.refund"}
	if err := w1.Register(ctx, reg); err != nil {
		t.Fatal(err)
	}
	s := wt.waitFor("w1 with the new meta", func(ms []Member) bool {
		return len(ms) == 1 && ms[0].Meta["plugin-donations"] == reg.Meta["plugin-donations"]
	})
	if s.Members[0].ID != "w1" {
		t.Fatalf("members %v", ids(s.Members))
	}
	// No SetHealth since: the check kept its passing status.
	if got := healthyIDs(t, w1); !equalIDs(got, "w1") {
		t.Fatalf("healthy after registering again: %v, want [w1]", got)
	}
}

func TestCheckTTLLapseDropsMember(t *testing.T) {
	agent := setup(t)
	ctx := context.Background()
	c := newConsul(t, agent.Addr)
	wt := watch(t, c)
	if err := c.Register(ctx, Registration{ID: "w1", Address: "127.0.0.1", Port: 7101, CheckTTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	// Under load the 1s TTL may lapse before the watch sees w1 at all;
	// keep reporting until it does, then fall silent.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				c.SetHealth(ctx, StatusPassing, "ok")
			}
		}
	}()
	wt.waitFor("w1", has("w1"))
	close(stop)
	<-done
	wt.waitFor("w1 dropped after its TTL lapsed", not(has("w1")))

	// Reporting again brings it back: the service itself is still there.
	if err := c.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "w1 healthy again", func() bool { return equalIDs(healthyIDs(t, c), "w1") })
}

func TestSetHealthRegistersAgainAfterAgentRestart(t *testing.T) {
	agent := setup(t)
	ctx := context.Background()
	c := newConsul(t, agent.Addr)
	wt := watch(t, c)
	reg := Registration{ID: "w1", Address: "127.0.0.1", Port: 7101, CheckTTL: time.Minute,
		Meta: map[string]string{"partitions": "64"}}
	if err := c.Register(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if err := c.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	before := wt.waitFor("w1", has("w1"))

	// A dev agent forgets every service when it restarts.
	agent.Restart(t)
	if got := healthyIDs(t, c); len(got) != 0 {
		t.Fatalf("restarted dev agent still lists %v", got)
	}
	if err := c.SetHealth(ctx, StatusPassing, "ok after restart"); err != nil {
		t.Fatalf("SetHealth after the agent restarted: %v", err)
	}
	eventually(t, "w1 healthy after re-registration", func() bool { return equalIDs(healthyIDs(t, c), "w1") })

	// The watch lived through the restart and follows the new agent, whose
	// index started again from scratch: a newcomer shows up in it.
	w2 := newConsul(t, agent.Addr)
	if err := w2.Register(ctx, Registration{ID: "w2", Address: "127.0.0.1", Port: 7102, CheckTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := w2.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	after := wt.waitFor("w1 and w2 on the restarted agent", func(ms []Member) bool { return sameIDs(ms, "w1", "w2") })
	if after.Members[0].Meta["partitions"] != "64" {
		t.Fatalf("re-registered without its meta: %+v", after.Members[0])
	}
	t.Logf("index before the restart %d, after %d", before.Index, after.Index)
}

func TestWatchClosesWithContextAndSurvivesNoAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("waits on a port with no agent")
	}
	t.Parallel()
	// Nothing listens here: the watch retries quietly and emits nothing.
	c := newConsul(t, "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Watch(ctx)
	select {
	case s := <-ch:
		t.Fatalf("snapshot %v without an agent", s)
	case <-time.After(time.Second):
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("snapshot after cancel")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch channel not closed 30s after cancel")
	}
	if _, err := c.Healthy(context.Background()); err == nil {
		t.Fatal("Healthy without an agent: no error")
	}
}

// TestUnreachableSaysWhereAndWhy: an agent nobody listens for is reported
// with its address and the bare reason, not the URL and call chain; an
// agent that answers with an error is not unreachable.
func TestUnreachableSaysWhereAndWhy(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:1" // nothing listens on port 1 (tcpmux)
	c, err := NewConsul(ConsulConfig{Address: addr, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Healthy(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("Healthy with no agent: %v, want an UnreachableError", err)
	}
	if got, want := ue.Error(), "cannot reach the Consul agent at "+addr+" (connection refused)"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := Unreachable(addr, api.StatusError{Code: 403, Body: "ACL not found"}); errors.As(got, &ue) {
		t.Fatalf("an answer from the agent taken for no answer: %v", got)
	}
}
