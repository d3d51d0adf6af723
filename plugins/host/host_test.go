package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// tWriter sends log lines to t.Log so a failing test shows them.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var built struct {
	once             sync.Once
	dir              string
	donations, chaos string
	badstart         string // exits 3 before the handshake, saying why on stderr
	// Upgrades: the same programs built with another version.
	donationsV2, chaosV2 string
	err                  error
}

func TestMain(m *testing.M) {
	if path := os.Getenv(fakeWorkerEnv); path != "" {
		fakeWorker(path)
		return
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildPlugins compiles the donations example and the misbehaving test
// plugin, once for all tests.
func buildPlugins(t testing.TB) (donations, chaos string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs plugin processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the plugins with")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "corral-host-test-")
		if built.err != nil {
			return
		}
		cmd := exec.Command(goBin, "build", "-o", built.dir+string(filepath.Separator),
			"github.com/corralhq/corral/examples/donations/plugin", "./testdata/chaos", "./testdata/badstart")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.donations = filepath.Join(built.dir, "donations-plugin")
		built.chaos = filepath.Join(built.dir, "chaos")
		built.badstart = filepath.Join(built.dir, "badstart")
		if built.err = os.Rename(filepath.Join(built.dir, "plugin"), built.donations); built.err != nil {
			return
		}
		v2 := filepath.Join(built.dir, "v2")
		cmd = exec.Command(goBin, "build", "-ldflags", "-X main.version=0.2.0", "-o", filepath.Join(v2, "donations-plugin"),
			"github.com/corralhq/corral/examples/donations/plugin")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		cmd = exec.Command(goBin, "build", "-ldflags", "-X main.version=6.6.7", "-o", filepath.Join(v2, "chaos"), "./testdata/chaos")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.donationsV2, built.chaosV2 = filepath.Join(v2, "donations-plugin"), filepath.Join(v2, "chaos")
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.donations, built.chaos
}

func startManager(t *testing.T, paths ...string) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Paths = paths
	cfg.Logger = testLogger(t)
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

func job(id, handler, key, payload string) *pluginpb.Job {
	return &pluginpb.Job{Id: id, Handler: handler, Key: key, Payload: []byte(payload), Attempt: 1}
}

func mustHandle(t *testing.T, m *Manager, req *pluginpb.HandleRequest) []*pluginpb.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.Handle(ctx, req)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if err := checkReply(req, resp); err != nil {
		t.Fatal(err)
	}
	return resp.GetOutcomes()
}

func wantOutcome(t *testing.T, o *pluginpb.Outcome, status pluginpb.Outcome_Status, state string) {
	t.Helper()
	if o.GetStatus() != status {
		t.Fatalf("job %s: status %v (%s), want %v", o.GetJobId(), o.GetStatus(), o.GetError(), status)
	}
	if state != "" && string(o.GetState()) != state {
		t.Fatalf("job %s: state %s, want %s", o.GetJobId(), o.GetState(), state)
	}
}

// alive reports whether pid runs. A zombie (killed, not yet reaped by
// whoever inherited it) counts as dead.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// donationBatch is two donations by alice, a credit for a campaign and a
// job nobody serves.
func donationBatch() *pluginpb.HandleRequest {
	return &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{
			{Type: "donor", Key: "alice", State: []byte(`{"total_cents":1000,"count":1,"zakat_cents":25}`)},
			{Type: "campaign", Key: "wells"},
		},
		Jobs: []*pluginpb.Job{
			job("d1", "donor.donate", "alice", `{"amount_cents":10000,"campaign":"water"}`),
			job("d2", "donor.donate", "alice", `{"amount_cents":2000,"campaign":"water"}`),
			job("c1", "campaign.credit", "wells", `{"amount_cents":500,"donor":"bob"}`),
			job("x1", "donor.refund", "alice", `{}`),
			job("d3", "donor.donate", "carol", `{"amount_cents":0,"campaign":"water"}`),
		},
	}
}

func checkDonationOutcomes(t *testing.T, out []*pluginpb.Outcome) {
	t.Helper()
	wantOutcome(t, out[0], pluginpb.Outcome_OK, `{"total_cents":11000,"count":2,"zakat_cents":275}`)
	wantOutcome(t, out[1], pluginpb.Outcome_OK, `{"total_cents":13000,"count":3,"zakat_cents":325}`)
	wantOutcome(t, out[2], pluginpb.Outcome_OK, `{"total_cents":500,"count":1}`)
	wantOutcome(t, out[3], pluginpb.Outcome_FAIL, "")
	if !strings.Contains(out[3].GetError(), "unknown handler") {
		t.Errorf("unknown handler error = %q", out[3].GetError())
	}
	wantOutcome(t, out[4], pluginpb.Outcome_FAIL, "")
	if !strings.Contains(out[4].GetError(), "positive") {
		t.Errorf("invalid donation error = %q", out[4].GetError())
	}
	if got := string(out[0].GetResult()); got != string(out[0].GetState()) {
		t.Errorf("d1 result %s, want the new donor state", got)
	}
	emits := out[0].GetEmits()
	if len(emits) != 1 || emits[0].GetHandler() != "campaign.credit" || emits[0].GetKey() != "water" ||
		string(emits[0].GetPayload()) != `{"amount_cents":10000,"donor":"alice"}` {
		t.Errorf("d1 emits = %v", emits)
	}
}

func TestDonationsPlugin(t *testing.T) {
	donations, _ := buildPlugins(t)
	m := startManager(t, donations)

	hs := m.Handlers()
	want := HandlerInfo{Plugin: "donations", Version: "0.1.0", Timeout: 5 * time.Second, MaxAttempts: 5,
		PayloadShape: `{"amount_cents":"integer","campaign":"string"}`, PayloadClosed: true, Entity: "donor"}
	wantCredit := want
	wantCredit.PayloadShape, wantCredit.Entity, wantCredit.Internal = `{"amount_cents":"integer","donor":"string"}`, "campaign", true
	wantReport := want
	wantReport.PayloadShape = `{"campaign":"string"}`
	if len(hs) != 3 || !reflect.DeepEqual(hs["donor.donate"], want) || !reflect.DeepEqual(hs["campaign.credit"], wantCredit) || !reflect.DeepEqual(hs["donor.report"], wantReport) {
		t.Fatalf("Handlers() = %+v", hs)
	}
	hs["donor.donate"] = HandlerInfo{}
	if !reflect.DeepEqual(m.Handlers()["donor.donate"], want) {
		t.Fatal("Handlers() returned the manager's own map")
	}
	if got := m.Plugins(); len(got) != 1 || got[0] != "donations@0.1.0" {
		t.Fatalf("Plugins() = %v", got)
	}

	checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))

	// A SIGKILLed plugin is relaunched by the next call.
	sup := m.sups[0]
	pid := sup.pid()
	if !alive(pid) {
		t.Fatalf("plugin pid %d is not running", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))
	if newPid := sup.pid(); newPid == pid || !alive(newPid) {
		t.Fatalf("after SIGKILL of %d the plugin runs as %d", pid, newPid)
	}

	// Concurrent callers share the plugin.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := m.Handle(context.Background(), donationBatch())
			if err == nil {
				err = checkReply(donationBatch(), resp)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	pid = sup.pid()
	m.Stop()
	m.Stop()
	if alive(pid) {
		t.Errorf("plugin %d still runs after Stop", pid)
	}
	if _, err := m.Handle(context.Background(), donationBatch()); !errors.Is(err, ErrStopped) {
		t.Errorf("Handle after Stop: %v, want ErrStopped", err)
	}
}

func TestDuplicateHandlerRejected(t *testing.T) {
	donations, _ := buildPlugins(t)
	copyPath := filepath.Join(t.TempDir(), "donations-copy")
	b, err := os.ReadFile(donations)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Paths = []string{donations, copyPath}
	cfg.Logger = testLogger(t)
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	err = m.Start(context.Background())
	if !errors.Is(err, ErrDuplicateHandler) || !strings.Contains(err.Error(), "donations-copy") {
		t.Fatalf("Start = %v, want ErrDuplicateHandler naming the second plugin", err)
	}
}

func TestMisbehavingPlugin(t *testing.T) {
	donations, chaos := buildPlugins(t)
	m := startManager(t, donations, chaos)
	if got := m.Plugins(); len(got) != 2 || got[0] != "chaos@6.6.6" || got[1] != "donations@0.1.0" {
		t.Fatalf("Plugins() = %v", got)
	}

	t.Run("split and merge", func(t *testing.T) {
		out := mustHandle(t, m, &pluginpb.HandleRequest{
			Entities: []*pluginpb.Entity{
				{Type: "donor", Key: "alice"},
				{Type: "chaos", Key: "k1", State: []byte(`{}`)},
				{Type: "chaos", Key: "unrelated"},
			},
			Jobs: []*pluginpb.Job{
				job("1", "donor.donate", "alice", `{"amount_cents":100,"campaign":"c"}`),
				job("2", "chaos.echo", "k1", `"first"`),
				job("3", "donor.donate", "alice", `{"amount_cents":100,"campaign":"c"}`),
				job("4", "chaos.echo", "k2", `"second"`),
			},
		})
		wantOutcome(t, out[0], pluginpb.Outcome_OK, `{"total_cents":100,"count":1,"zakat_cents":2}`)
		wantOutcome(t, out[2], pluginpb.Outcome_OK, `{"total_cents":200,"count":2,"zakat_cents":5}`)
		for i, payload := range map[int]string{1: `"first"`, 3: `"second"`} {
			var r struct {
				Payload  json.RawMessage `json:"payload"`
				Entities []string        `json:"entities"`
			}
			if err := json.Unmarshal(out[i].GetResult(), &r); err != nil {
				t.Fatal(err)
			}
			if string(r.Payload) != payload || len(r.Entities) != 1 || r.Entities[0] != "chaos/k1" {
				t.Errorf("chaos job %d saw %s", i, out[i].GetResult())
			}
		}
	})

	t.Run("bad reply", func(t *testing.T) {
		_, err := m.Handle(context.Background(), &pluginpb.HandleRequest{
			Jobs: []*pluginpb.Job{job("1", "donor.donate", "a", `{"amount_cents":1,"campaign":"c"}`), job("2", "chaos.badreply", "k", `{}`)},
		})
		if !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), `"not-2"`) {
			t.Fatalf("Handle = %v, want ErrBadReply", err)
		}
	})

	chaosSup := m.sups[1]
	t.Run("hang is cut at the deadline", func(t *testing.T) {
		pid := chaosSup.pid()
		start := time.Now()
		_, err := m.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("1", "chaos.hang", "k", `{}`)}})
		if err == nil {
			t.Fatal("a hung call succeeded")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("a call with a 300ms deadline took %v", took)
		}
		// The stuck process is replaced, so the next call works.
		out := mustHandle(t, m, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("2", "chaos.echo", "k", `1`)}})
		wantOutcome(t, out[0], pluginpb.Outcome_OK, "")
		if chaosSup.pid() == pid {
			t.Fatal("the hung plugin process is still in use")
		}
	})

	t.Run("crash mid-call", func(t *testing.T) {
		_, err := m.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("1", "chaos.exit", "k", `{}`)}})
		if err == nil {
			t.Fatal("a call whose plugin exited succeeded")
		}
		// Other plugins are unaffected, and chaos comes back after backoff.
		mustHandle(t, m, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("2", "donor.donate", "a", `{"amount_cents":1,"campaign":"c"}`)}})
		testenv.Eventually(t, 10*time.Second, func() error {
			_, err := m.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("3", "chaos.echo", "k", `1`)}})
			if err != nil && !errors.Is(err, ErrPluginUnavailable) {
				t.Fatalf("chaos did not come back: %v", err)
			}
			if err != nil {
				return fmt.Errorf("chaos did not come back: %v", err)
			}
			return nil
		})
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "good-plugin")
	notExe := filepath.Join(dir, "readme.txt")
	for path, mode := range map[string]os.FileMode{exe: 0o755, notExe: 0o644} {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "no-such-plugin")
	garbage := filepath.Join(dir, "sums")
	if err := os.WriteFile(garbage, []byte("# pins\nnot-a-sum  good-plugin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		wants string // substring of the error; "" means valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"no paths", func(c *Config) { c.Paths = nil }, "no plugin paths"},
		{"missing", func(c *Config) { c.Paths = []string{exe, missing} }, missing + " does not exist"},
		{"not executable", func(c *Config) { c.Paths = []string{notExe} }, notExe + " is not executable"},
		{"directory", func(c *Config) { c.Paths = []string{dir} }, dir + " is a directory"},
		{"twice", func(c *Config) { c.Paths = []string{exe, filepath.Join(dir, ".", "good-plugin")} }, "listed twice"},
		{"call timeout", func(c *Config) { c.CallTimeout = 0 }, "call timeout must be positive"},
		{"start timeout", func(c *Config) { c.StartTimeout = -time.Second }, "start timeout must be positive"},
		{"pinned", func(c *Config) { c.Checksums = map[string]string{exe: strings.Repeat("ab", 32)} }, ""},
		{"bad checksum", func(c *Config) { c.Checksums = map[string]string{exe: "abc"} }, "not 64 hex digits"},
		{"checksum of a stranger", func(c *Config) { c.Checksums = map[string]string{notExe: strings.Repeat("ab", 32)} }, "not a plugin path"},
		{"checksum file missing", func(c *Config) { c.ChecksumFile = missing }, "read checksum file"},
		{"checksum file garbage", func(c *Config) { c.ChecksumFile = garbage }, "line 2"},
		{"restart window", func(c *Config) { c.RestartWindow = 0 }, "restart intensity"},
		{"small messages", func(c *Config) { c.MaxMessageBytes = 1 << 20 }, "at least 4 MiB"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.Paths = []string{exe}
		tt.edit(&cfg)
		err := cfg.Validate()
		switch {
		case tt.wants == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.wants != "" && (err == nil || !strings.Contains(err.Error(), tt.wants)):
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.wants)
		}
	}
	if _, err := New(Config{Paths: []string{missing}, CallTimeout: time.Second, StartTimeout: time.Second}); err == nil ||
		!strings.Contains(err.Error(), missing) {
		t.Errorf("New with a missing plugin = %v", err)
	}
}

func TestLifecycleWithoutPlugins(t *testing.T) {
	t.Parallel()
	exe := filepath.Join(t.TempDir(), "p")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Paths = []string{exe}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Handle(context.Background(), &pluginpb.HandleRequest{}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Handle before Start = %v, want ErrNotStarted", err)
	}
	if len(m.Handlers()) != 0 || len(m.Plugins()) != 0 {
		t.Error("handlers before Start")
	}
	m.Stop()
	m.Stop()
	if err := m.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop = %v, want ErrStopped", err)
	}
}

func TestStartFailsOnNonPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a process")
	}
	t.Parallel()
	exe := filepath.Join(t.TempDir(), "not-a-plugin")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho hello\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Paths = []string{exe}
	cfg.Logger = testLogger(t)
	cfg.StartTimeout = 3 * time.Second
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), exe) {
		t.Fatalf("Start = %v, want an error naming %s", err, exe)
	}
}

func TestRestartDelay(t *testing.T) {
	t.Parallel()
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	for n, w := range want {
		if got := restartDelay(n); got != w {
			t.Errorf("restartDelay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := restartDelay(1000); got != maxRestartDelay {
		t.Errorf("restartDelay(1000) = %v", got)
	}
}

func TestCheckReply(t *testing.T) {
	t.Parallel()
	req := &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{{Id: "a"}, {Id: "b"}}}
	ok := func(id string) *pluginpb.Outcome { return &pluginpb.Outcome{JobId: id, Status: pluginpb.Outcome_OK} }
	tests := []struct {
		name string
		outs []*pluginpb.Outcome
		good bool
	}{
		{"matching", []*pluginpb.Outcome{ok("a"), ok("b")}, true},
		{"too few", []*pluginpb.Outcome{ok("a")}, false},
		{"too many", []*pluginpb.Outcome{ok("a"), ok("b"), ok("c")}, false},
		{"swapped", []*pluginpb.Outcome{ok("b"), ok("a")}, false},
		{"no status", []*pluginpb.Outcome{ok("a"), {JobId: "b"}}, false},
		{"rejected", []*pluginpb.Outcome{ok("a"), {JobId: "b", Status: pluginpb.Outcome_REJECTED, Error: "no"}}, true},
		{"unknown status", []*pluginpb.Outcome{ok("a"), {JobId: "b", Status: 9}}, false},
	}
	for _, tt := range tests {
		err := checkReply(req, &pluginpb.HandleResponse{Outcomes: tt.outs})
		if tt.good != (err == nil) || (err != nil && !errors.Is(err, ErrBadReply)) {
			t.Errorf("%s: checkReply = %v", tt.name, err)
		}
	}
}

func TestEntitiesOf(t *testing.T) {
	t.Parallel()
	routes := map[string]route{
		"donor.donate": {info: HandlerInfo{Entity: "donor"}},
		"stock.add":    {info: HandlerInfo{Entity: "inventory"}},
	}
	all := []*pluginpb.Entity{{Type: "donor", Key: "a"}, {Type: "campaign", Key: "a"}, {Type: "donor", Key: "b"},
		{Type: "stock", Key: "s"}, {Type: "inventory", Key: "s"}}
	got := entitiesOf(all, []*pluginpb.Job{{Handler: "donor.donate", Key: "a"}, {Handler: "donor.donate", Key: "c"},
		{Handler: "stock.add", Key: "s"}}, routes)
	if len(got) != 2 || got[0] != all[0] || got[1] != all[4] {
		t.Fatalf("entitiesOf = %v, want donor a and inventory s (stock.add declares entity inventory)", got)
	}
	if es := entitiesIn(routes); strings.Join(es, ",") != "donor,inventory" {
		t.Fatalf("entitiesIn = %v", es)
	}
	before := &pluginpb.DescribeResponse{Handlers: []*pluginpb.HandlerSpec{{Name: "stock.add"}, {Name: "donor.donate"}}}
	after := &pluginpb.DescribeResponse{Handlers: []*pluginpb.HandlerSpec{{Name: "stock.add", Entity: "inventory"}, {Name: "donor.donate", Entity: "donor"}}}
	if mv := movedEntities(before, after); len(mv) != 1 || mv[0] != [3]string{"stock.add", "stock", "inventory"} {
		t.Fatalf("movedEntities = %v, want stock.add from stock to inventory only", mv)
	}
}

func TestPluginLogForwarding(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := newPluginLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "donations")
	h := l.hclog().Named("donations-plugin")
	h.Warn("disk almost full", "free_mb", 12, "plugin", "/bin/x")
	_, _ = l.stdio("stdout").Write([]byte("hello from fmt.Println\npartial"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["level"] != "WARN" || rec["msg"] != "disk almost full" || rec["plugin"] != "donations" || rec["path"] != "/bin/x" ||
		rec["free_mb"] != 12.0 || rec["module"] != "plugin.donations-plugin" {
		t.Errorf("forwarded record = %s", lines[0])
	}
	if !strings.Contains(lines[1], `"msg":"hello from fmt.Println"`) || !strings.Contains(lines[1], `"stream":"stdout"`) {
		t.Errorf("stdout record = %s", lines[1])
	}
}

// fakeWorkerEnv makes the test binary act as a worker that runs the plugin
// it names, for TestPluginDiesWithWorker.
const fakeWorkerEnv = "CORRAL_HOST_TEST_FAKE_WORKER"

// fakeWorkerCacheEnv is the fake worker's plugin cache folder, which its
// SIGKILL leaves behind.
const fakeWorkerCacheEnv = "CORRAL_HOST_TEST_FAKE_WORKER_CACHE"

func fakeWorker(path string) {
	cfg := DefaultConfig()
	cfg.Paths = []string{path}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = os.Getenv(fakeWorkerCacheEnv)
	m, err := New(cfg)
	if err == nil {
		err = m.Start(context.Background())
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(m.sups[0].pid())
	select {} // until SIGKILLed
}

func TestPluginDiesWithWorker(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parent-death signal is Linux only")
	}
	donations, _ := buildPlugins(t)
	worker := exec.Command(os.Args[0], "-test.run=^$")
	worker.Env = append(os.Environ(), fakeWorkerEnv+"="+donations, fakeWorkerCacheEnv+"="+t.TempDir())
	stdout, err := worker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = worker.Process.Kill()
		t.Fatalf("fake worker: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || !alive(pid) {
		_ = worker.Process.Kill()
		t.Fatalf("fake worker said %q", line)
	}
	if err := worker.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = worker.Wait()
	outlived := true
	t.Cleanup(func() {
		if outlived {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testenv.Eventually(t, 5*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("plugin %d outlived its SIGKILLed worker", pid)
		}
		return nil
	})
	outlived = false
}

// fakeHost answers every query with one campaign's state.
type fakeHost struct {
	pluginpb.UnimplementedHostServer
}

func (fakeHost) GetState(_ context.Context, req *pluginpb.HostGetStateRequest) (*pluginpb.HostGetStateResponse, error) {
	return &pluginpb.HostGetStateResponse{Found: true, State: []byte(`{"total_cents":700,"count":2}`)}, nil
}

// TestHostQueryRefusesUndeclaredEntity: a handler's query for a declared
// entity reaches Config.Host; one for an entity no handler declares is
// refused with the declared ones named.
func TestHostQueryRefusesUndeclaredEntity(t *testing.T) {
	donations, _ := buildPlugins(t)
	cfg := DefaultConfig()
	cfg.Paths = []string{donations}
	cfg.Logger = testLogger(t)
	cfg.Host = fakeHost{}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	out := mustHandle(t, m, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("r1", "donor.report", "alice", `{"campaign":"water"}`)}})
	if out[0].GetStatus() != pluginpb.Outcome_OK || !strings.Contains(string(out[0].GetResult()), `"total_cents":700`) {
		t.Fatalf("donor.report = %v %s %s, want OK with the campaign's state", out[0].GetStatus(), out[0].GetResult(), out[0].GetError())
	}
	_, err = m.cfg.Host.GetState(context.Background(), &pluginpb.HostGetStateRequest{Entity: "campaigns", Key: "water"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `unknown entity "campaigns" (the handlers declare: campaign, donor)`) {
		t.Fatalf("query of an undeclared entity: %v", err)
	}

	// A Host that lists the cluster's other entities lets them through.
	m.cfg.Host = declaredEntities{HostServer: listingHost{entities: []string{"inventory", "donor"}}, m: m}
	if _, err := m.cfg.Host.GetState(context.Background(), &pluginpb.HostGetStateRequest{Entity: "inventory", Key: "sku-1"}); err != nil {
		t.Fatalf("query of an entity another worker's plugin declares: %v", err)
	}
	_, err = m.cfg.Host.GetState(context.Background(), &pluginpb.HostGetStateRequest{Entity: "stock", Key: "sku-1"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `unknown entity "stock" (the handlers declare: campaign, donor, inventory)`) {
		t.Fatalf("query of an entity nobody declares: %v", err)
	}
}

// listingHost is a fakeHost that knows entity types of other workers.
type listingHost struct {
	fakeHost
	entities []string
}

func (l listingHost) KnownEntities() []string { return l.entities }
