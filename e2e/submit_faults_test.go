package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
)

// launchArgs is launch with extra worker flags for this worker only.
func (c *cluster) launchArgs(id string, extra ...string) {
	c.t.Helper()
	saved := c.flags
	c.flags = append(slices.Clip(saved), extra...)
	defer func() { c.flags = saved }()
	c.launch(id, workerRun{})
}

// coordinatorCmd is the coordinator command for c, not yet started.
func (c *cluster) coordinatorCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bins, "coordinator"), append([]string{"--consul", c.consul.Addr}, args...)...)
	cmd.Env = append(os.Environ(), c.coordinatorEnv(pki.RoleAdmin)...)
	return cmd
}

// logCounter counts log records whose message and attributes mention all
// of the given words.
type logCounter struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func (l *logCounter) count(words ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		all := true
		for _, w := range words {
			all = all && strings.Contains(s, w)
		}
		if all {
			n++
		}
	}
	return n
}

// donorStates waits until every key has at least want donations committed
// and returns their states.
func donorStates(t *testing.T, cl *client.Client, want int64, keys ...string) map[string]ledger.DonorState {
	t.Helper()
	var out map[string]ledger.DonorState
	testenv.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sts, err := cl.State(ctx, "donor", keys...)
		out = map[string]ledger.DonorState{}
		for _, st := range sts {
			var d ledger.DonorState
			if st.Found {
				if err := json.Unmarshal(st.State, &d); err != nil {
					t.Fatal(err)
				}
			}
			if d.Count >= want {
				out[st.Key] = d
			}
		}
		if err != nil || len(out) != len(keys) {
			return fmt.Errorf("only %d of %d donors have %d donations (last error %v)", len(out), len(keys), want, err)
		}
		return nil
	})
	return out
}

// TestSubmitWithoutIDOnceThroughSlowWorker: one worker's replies are held
// (a TCP proxy in front of its gRPC port, which Consul advertises) past
// the client's call deadline, so the client gives up on it and sends the
// same jobs to the other worker. Jobs submitted without an id must still
// be applied once: the client names them before the first attempt.
func TestSubmitWithoutIDOnceThroughSlowWorker(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	px := testenv.StartProxy(t, listen)
	c.launchArgs("w2", "--listen", listen, "--advertise", px.Addr)
	c.waitMembers(func(ids []string) bool { return len(ids) == 2 }, "two workers healthy")

	logs := &logCounter{}
	cfg := c.clientConfig()
	cfg.Logger = slog.New(logs)
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	donate := func(key string, cents int, id string) *workerpb.Job {
		return &workerpb.Job{Id: id, Handler: "donor.donate", Key: key,
			Payload: []byte(fmt.Sprintf(`{"amount_cents": %d, "campaign": "slow"}`, cents))}
	}
	// Open the connections to both workers before the delay, so that the
	// held replies are those of Submit calls, not of the HTTP/2 handshake.
	for i := range 4 {
		if _, err := cl.Submit(ctx, []*workerpb.Job{donate(fmt.Sprintf("warm-%d", i), 1, fmt.Sprintf("warm-%d", i))}); err != nil {
			t.Fatalf("warm-up submit: %v", err)
		}
	}

	px.Delay(3 * time.Second) // past the client's 2 s call deadline
	var keys []string
	for i := range 4 {
		key := fmt.Sprintf("slow-%d", i)
		keys = append(keys, key)
		res, err := cl.Submit(ctx, []*workerpb.Job{donate(key, 100, "")})
		if err != nil {
			t.Fatalf("submit %s: %v", key, err)
		}
		if r := res[0]; r.Error != "" || r.Duplicate {
			t.Fatalf("submit %s: %+v, want enqueued", key, r)
		}
	}
	px.Delay(0)

	// A last donation of 1 cent per key, with an id: it commits after every
	// job of its key enqueued before it, a second copy of the first too.
	for i, key := range keys {
		if _, err := cl.Submit(ctx, []*workerpb.Job{donate(key, 1, fmt.Sprintf("last-%d", i))}); err != nil {
			t.Fatalf("submit the last donation of %s: %v", key, err)
		}
	}
	for key, d := range donorStates(t, cl, 2, keys...) {
		if d.Count != 2 || d.TotalCents != 101 {
			t.Errorf("%s: %d donations, %d cents; want 2 donations of 101 cents (the id-less one applied once)", key, d.Count, d.TotalCents)
		}
	}
	if n := logs.count("w2", "trying the next"); n == 0 {
		t.Errorf("no submit timed out on the slow worker w2: the test proved nothing; client log:\n%s", strings.Join(logs.lines, "\n"))
	}
}

// TestSubmitFileWithoutIDsTwice: the coordinator names id-less lines from
// their place and content, so sending the same file again (as after a
// failure) adds nothing twice, while two identical lines of one file are
// two jobs. Through stdin as well.
func TestSubmitFileWithoutIDsTwice(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	c.start("w2")
	var b strings.Builder
	var keys []string
	for i := range 20 {
		key := fmt.Sprintf("file-%d", i)
		keys = append(keys, key)
		line := fmt.Sprintf(`{"handler":"donor.donate","key":%q,"payload":{"amount_cents":100,"campaign":"file"}}`, key)
		b.WriteString(line + "\n" + line + "\n") // two identical lines, two donations
	}
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.coordinator("submit", "--quiet", "--file", file)
	if err != nil || !strings.Contains(out, "submitted 40, duplicates 0,") {
		t.Fatalf("first submit: %q %v", out, err)
	}
	out, err = c.coordinator("submit", "--quiet", "--file", file)
	if err != nil || !strings.Contains(out, "submitted 0, duplicates 40,") {
		t.Errorf("second submit of the same file: %q %v, want every line a duplicate", out, err)
	}
	cmd := c.coordinatorCmd("submit", "--quiet", "--file", "-")
	cmd.Stdin = strings.NewReader(b.String())
	stdout, err := cmd.Output()
	if err != nil || !strings.Contains(string(stdout), "submitted 0, duplicates 40,") {
		t.Errorf("the same lines again through stdin: %q %v, want every line a duplicate", stdout, err)
	}
	// A last donation per key, with an id, commits after everything above.
	var last strings.Builder
	for i, key := range keys {
		fmt.Fprintf(&last, `{"id":"file-last-%d","handler":"donor.donate","key":%q,"payload":{"amount_cents":1,"campaign":"file"}}`+"\n", i, key)
	}
	cmd = c.coordinatorCmd("submit", "--quiet", "--file", "-")
	cmd.Stdin = strings.NewReader(last.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("last donations: %v: %s", err, out)
	}
	cl := c.client()
	for key, d := range donorStates(t, cl, 3, keys...) {
		if d.Count != 3 || d.TotalCents != 201 {
			t.Errorf("%s: %d donations, %d cents; want 3 donations of 201 cents", key, d.Count, d.TotalCents)
		}
	}
}

// TestSubmitFileRedisDown: when Redis goes down while submit --file runs,
// it retries for --retry-for, then stops and says how many lines were not
// sent and where the first is; sent again once Redis is back, the same
// lines are applied once. No line is reported rejected.
func TestSubmitFileRedisDown(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	c.start("w2")
	var b strings.Builder
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("down-%d", i))
	}
	for range 20 {
		for _, key := range keys {
			fmt.Fprintf(&b, `{"handler":"donor.donate","key":%q,"payload":{"amount_cents":100,"campaign":"down"}}`+"\n", key)
		}
	}
	// The coordinator reads its input only once it has found the workers
	// and the partition count; a megabyte of empty lines that it has read
	// (the pipe holds 64 KiB) says it is past that. Then Redis goes.
	pad := strings.Repeat("\n", 1<<20)
	cmd := c.coordinatorCmd("--retry-for", "2s", "submit", "--quiet", "--file", "-")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(in, pad); err != nil {
		t.Fatal(err)
	}
	c.redis.Kill(t)
	io.WriteString(in, b.String())
	in.Close()
	err = cmd.Wait()
	out, msg := stdout.String(), stderr.String()
	t.Logf("submit with Redis down: %s %v", strings.TrimSpace(out), err)
	if err == nil {
		t.Fatal("submit --file succeeded with Redis down")
	}
	if strings.Contains(msg, "rejected:") || !strings.Contains(out, "rejected 0, not sent 200") {
		t.Errorf("lines reported rejected while Redis was down: %s %s", out, msg)
	}
	for _, want := range []string{fmt.Sprintf("200 lines not sent, the first is line %d", len(pad)+1), "send the same file again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("submit error does not say %q: %s", want, msg)
		}
	}
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(file, []byte(pad+b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.redis.Restart(t)
	c.waitMembers(func(ids []string) bool { return len(ids) == 2 }, "both workers healthy again")
	out, err = c.coordinator("submit", "--quiet", "--file", file)
	if err != nil || !strings.Contains(out, "submitted 200, duplicates 0, rejected 0") {
		t.Fatalf("submit again with Redis back: %q %v", out, err)
	}
	for key, d := range donorStates(t, c.client(), 20, keys...) {
		if d.Count != 20 || d.TotalCents != 2000 {
			t.Errorf("%s: %d donations, %d cents; want 20 of 2000 cents", key, d.Count, d.TotalCents)
		}
	}
}
