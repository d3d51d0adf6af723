package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// runsIn is the broadcast ids a member's plugin recorded running, one per run.
func runsIn(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestBroadcastToGroupWithAMemberKilled: a broadcast to a group of three
// while one member is SIGKILLed runs once on each of the other two
// (counted by the plugin itself, in a file per member), reports the dead
// one, and runs nowhere outside the group; the same id sent again runs
// nowhere again.
func TestBroadcastToGroupWithAMemberKilled(t *testing.T) {
	c := newCluster(t, "--partitions", "8")
	plugin := sessionsPlugin(t, c)
	runs := func(id string) string { return filepath.Join(c.dir, id+".runs") }
	for _, id := range []string{"w1", "w2", "w3"} {
		c.launch(id, workerRun{plugin: plugin, env: []string{"CORRAL_BROADCAST_LOG=" + runs(id)}, args: []string{"--groups", "cache,web"}})
	}
	c.launch("w4", workerRun{plugin: plugin, env: []string{"CORRAL_BROADCAST_LOG=" + runs("w4")}, args: []string{"--groups", "web"}})
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if out, err := c.coordinator("status"); err != nil || !strings.Contains(out, "groups: cache (w1, w2, w3), web (w1, w2, w3, w4)") {
		t.Errorf("status does not name the groups: %v\n%s", err, out)
	}
	// A fast broadcast first, to measure the round trip.
	start := time.Now()
	resp, err := cl.Broadcast(ctx, "cache", "cache.invalidate", []byte(`{"prefix":"stock:"}`), "warm-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("broadcast to a group of 3: %v end to end; members: %v", time.Since(start).Round(time.Millisecond), resp.Members)
	if len(resp.Members) != 3 {
		t.Fatalf("members %v, want w1, w2 and w3", resp.Members)
	}

	// The fan-out goes through w1, so killing w3 cannot take it down.
	var w1 string
	ms, err := cl.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == "w1" {
			w1 = m.Address
		}
	}
	conn, err := grpc.Dial(w1, grpc.WithTransportCredentials(credentials.NewTLS(c.pki.ClientTLS(t, pki.RoleAdmin))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type answer struct {
		resp *workerpb.BroadcastResponse
		err  error
	}
	done := make(chan answer, 1)
	start = time.Now()
	go func() {
		r, err := workerpb.NewWorkerClient(conn).Broadcast(ctx, &workerpb.BroadcastRequest{Group: "cache", Handler: "cache.invalidate",
			Payload: []byte(`{"prefix":"price:","sleep_ms":2000}`), Id: "inv-1", TimeoutMs: 6000})
		done <- answer{r, err}
	}()
	// The fault's timing: w3 dies 0.7 s into the 2 s runs, while every
	// member is inside its run. Nothing marks a run's start (the plugin
	// records a run only when it ends), so this is a deliberate delay.
	time.Sleep(700 * time.Millisecond)
	c.signal("w3", 9)
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Logf("broadcast inv-1 with w3 killed 0.7 s in: answered after %v: %v", time.Since(start).Round(time.Millisecond), a.resp.Members)
	got := map[string]workerpb.BroadcastMemberResult_Outcome{}
	for _, m := range a.resp.Members {
		got[m.Member] = m.Outcome
	}
	if got["w1"] != workerpb.BroadcastMemberResult_RAN || got["w2"] != workerpb.BroadcastMemberResult_RAN ||
		got["w3"] != workerpb.BroadcastMemberResult_UNREACHABLE || len(got) != 3 {
		t.Fatalf("outcomes %v: want w1 and w2 ran, w3 unreachable", got)
	}
	for id, want := range map[string]int{"w1": 1, "w2": 1, "w3": 0, "w4": 0} {
		if n := strings.Count(strings.Join(runsIn(t, runs(id)), " "), "inv-1"); n != want {
			t.Errorf("%s ran inv-1 %d times, want %d", id, n, want)
		}
	}

	// The same id again, through the command and any worker: nowhere again.
	out, err := c.coordinator("broadcast", "--group", "cache", "--handler", "cache.invalidate", "--payload", `{"prefix":"price:"}`, "--id", "inv-1", "--member-timeout", "3s")
	t.Logf("broadcast inv-1 again:\n%s(%v)", out, err)
	if !strings.Contains(out, "w1") || !strings.Contains(out, "w2") || strings.Count(out, "already") < 2 {
		t.Errorf("the same id again: want w1 and w2 already, got:\n%s", out)
	}
	for id, want := range map[string]int{"w1": 1, "w2": 1, "w3": 0, "w4": 0} {
		if n := strings.Count(strings.Join(runsIn(t, runs(id)), " "), "inv-1"); n != want {
			t.Errorf("after sending inv-1 again, %s ran it %d times, want %d", id, n, want)
		}
	}
	// No group: every live worker, w4 included.
	c.waitMembers(func(ids []string) bool { return !contains(ids, "w3") }, "w3 gone from Consul")
	out, err = c.coordinator("broadcast", "--handler", "cache.invalidate", "--payload", `{"prefix":""}`, "--id", "all-1")
	if err != nil || strings.Count(out, " ran ") != 3 {
		t.Fatalf("broadcast to every worker: %v\n%s", err, out)
	}
	if n := len(runsIn(t, runs("w4"))); n != 1 {
		t.Errorf("w4 ran %d broadcasts, want only the one to every worker", n)
	}
	// A member that hangs (SIGSTOP) is reported once the member timeout
	// passes, not waited for.
	c.signal("w2", syscall.SIGSTOP)
	start = time.Now()
	r, err := workerpb.NewWorkerClient(conn).Broadcast(ctx, &workerpb.BroadcastRequest{Group: "cache", Handler: "cache.invalidate",
		Payload: []byte(`{"prefix":""}`), Id: "hung-1", TimeoutMs: 1000})
	took := time.Since(start)
	c.signal("w2", syscall.SIGCONT)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("broadcast hung-1 with w2 stopped: answered after %v: %v", took.Round(time.Millisecond), r.Members)
	for _, m := range r.Members {
		if m.Member == "w2" && m.Outcome != workerpb.BroadcastMemberResult_UNREACHABLE || m.Member == "w1" && m.Outcome != workerpb.BroadcastMemberResult_RAN {
			t.Errorf("with w2 stopped: %v", r.Members)
		}
	}
	if took > 3*time.Second {
		t.Errorf("a stopped member held the broadcast %v with a member timeout of 1 s", took)
	}
	// A payload the handler's shape refuses runs nowhere.
	if _, err := c.coordinator("broadcast", "--handler", "cache.invalidate", "--payload", `{}`); err == nil || !strings.Contains(err.Error(), `"prefix" is missing`) {
		t.Errorf("broadcast of a payload without its required field: %v", err)
	}
	// A job handler is not broadcast, nor a broadcast handler submitted.
	if _, err := c.coordinator("broadcast", "--handler", "session.visit"); err == nil || !strings.Contains(err.Error(), "not a broadcast handler") {
		t.Errorf("broadcast of a job handler: %v", err)
	}
	if _, err := c.coordinator("submit", "--handler", "cache.invalidate", "--key", "k", "--payload", `{"prefix":"x"}`); err == nil || !strings.Contains(err.Error(), "broadcast handler") {
		t.Errorf("submit of a broadcast handler: %v", err)
	}
}
