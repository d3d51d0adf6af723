package host

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// startWith starts a manager of paths with cfg edited by edit.
func startWith(t testing.TB, edit func(*Config), paths ...string) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Paths = paths
	cfg.Logger = testLogger(t)
	if edit != nil {
		edit(&cfg)
	}
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

// copyExe copies the binary src to dir/name, as an operator installing it.
func copyExe(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// Write beside and rename, as an install does, so a running process
	// keeps its file.
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type echoResult struct {
	Pid     int      `json:"pid"`
	Version string   `json:"version"`
	Env     []string `json:"env"`
}

func chaosCall(t *testing.T, m *Manager, handler, payload string) (echoResult, error) {
	t.Helper()
	resp, err := m.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("j", handler, "k", payload)}})
	if err != nil {
		return echoResult{}, err
	}
	var r echoResult
	if handler == "chaos.big" {
		return r, nil // a blob, not JSON
	}
	if err := json.Unmarshal(resp.GetOutcomes()[0].GetResult(), &r); err != nil {
		t.Fatalf("%s result: %v", handler, err)
	}
	return r, nil
}

func TestChecksumPinned(t *testing.T) {
	donations, _ := buildPlugins(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, "donations-plugin")
	copyExe(t, donations, exe)
	good := sha256Hex(t, exe)
	bad := strings.Repeat("0", 64)

	t.Run("matching checksum runs", func(t *testing.T) {
		m := startWith(t, func(c *Config) { c.Checksums = map[string]string{exe: good} }, exe)
		checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))
	})

	t.Run("mismatch is refused with both sums", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Paths = []string{exe}
		cfg.Logger = testLogger(t)
		cfg.Checksums = map[string]string{exe: bad}
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop()
		err = m.Start(context.Background())
		if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), good) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("Start = %v, want ErrChecksumMismatch naming both checksums", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("checksum file is re-read on reload", func(t *testing.T) {
		sums := filepath.Join(dir, "plugins.sha256")
		if err := os.WriteFile(sums, []byte(good+"  donations-plugin\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		m := startWith(t, func(c *Config) { c.ChecksumFile = sums }, exe)
		// A new binary without a new pin is refused; the old one keeps serving.
		copyExe(t, built.donationsV2, exe)
		if _, err := m.Reload(context.Background()); !errors.Is(err, ErrChecksumMismatch) {
			t.Fatalf("reload of an unpinned binary = %v, want ErrChecksumMismatch", err)
		}
		if got := m.Plugins(); len(got) != 1 || got[0] != "donations@0.1.0" {
			t.Fatalf("after a refused reload Plugins() = %v", got)
		}
		if st := m.PluginStatus(); len(st) != 1 || st[0].Refused != "reload failed: its sha256 is not the pinned one" ||
			st[0].SHA256 != good || st[0].RefusedSHA256 != sha256Hex(t, exe) {
			t.Fatalf("after a refused reload PluginStatus() = %+v", st)
		}
		checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))
		// Pinning the new binary lets the reload through.
		line := sha256Hex(t, exe) + " *" + exe + "\n"
		if err := os.WriteFile(sums, []byte("# pinned by the deploy\n"+line), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := m.Reload(context.Background())
		if err != nil || len(got) != 1 || got[0] != "donations@0.2.0" {
			t.Fatalf("Reload = %v, %v", got, err)
		}
		checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))
		copyExe(t, donations, exe) // put v1 back for other subtests
	})
}

func TestParsePluginFlag(t *testing.T) {
	t.Parallel()
	sum := strings.Repeat("aB", 32)
	for in, want := range map[string][2]string{
		"bin/p":                 {"bin/p", ""},
		"bin/p@sha256=" + sum:   {"bin/p", strings.ToLower(sum)},
		"/a@b/p@sha256=" + sum:  {"/a@b/p", strings.ToLower(sum)},
		"bin/p@sha256=12":       {"", "error"},
		"bin/p@sha256=" + "zz0": {"", "error"},
	} {
		path, got, err := ParsePluginFlag(in)
		if want[1] == "error" {
			if err == nil {
				t.Errorf("ParsePluginFlag(%q) accepted a bad checksum", in)
			}
			continue
		}
		if err != nil || path != want[0] || got != want[1] {
			t.Errorf("ParsePluginFlag(%q) = %q, %q, %v", in, path, got, err)
		}
	}
}

// TestReloadFinishesInFlight upgrades chaos while a slow call runs: the
// call finishes on the old process, later calls reach the new version, and
// the old process is gone once its call is done.
func TestReloadFinishesInFlight(t *testing.T) {
	_, chaos := buildPlugins(t)
	exe := filepath.Join(t.TempDir(), "chaos")
	copyExe(t, chaos, exe)
	m := startWith(t, nil, exe)
	before, err := chaosCall(t, m, "chaos.echo", "1")
	if err != nil {
		t.Fatal(err)
	}

	slow := make(chan echoResult, 1)
	slowErr := make(chan error, 1)
	go func() {
		r, err := chaosCall(t, m, "chaos.slow", "1500")
		slow <- r
		slowErr <- err
	}()
	waitInFlight(t, m.sups[0], 1) // the slow call holds the old process
	copyExe(t, built.chaosV2, exe)
	start := time.Now()
	plugs, err := m.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reload took %v while a call was in flight", time.Since(start))
	if len(plugs) != 1 || plugs[0] != "chaos@6.6.7" {
		t.Fatalf("Reload = %v", plugs)
	}
	after, err := chaosCall(t, m, "chaos.echo", "2")
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != "6.6.7" || after.Pid == before.Pid {
		t.Fatalf("after reload a call ran on %+v, before on %+v", after, before)
	}
	if !alive(before.Pid) {
		t.Fatal("the old process was killed with a call in flight")
	}
	r, err := <-slow, <-slowErr
	if err != nil {
		t.Fatalf("in-flight call failed across the reload: %v", err)
	}
	if r.Pid != before.Pid || r.Version != "6.6.6" {
		t.Fatalf("in-flight call finished on %+v, want the old process %d", r, before.Pid)
	}
	waitDead(t, before.Pid)
	if n := m.Restarts(); n != 0 {
		t.Errorf("a reload counted as %d restarts", n)
	}
	// A reload to a binary that dies at start changes nothing.
	if err := os.WriteFile(exe+".new", []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(exe+".new", exe); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reload(context.Background()); err == nil {
		t.Fatal("reload to a broken binary succeeded")
	}
	if r, err := chaosCall(t, m, "chaos.echo", "3"); err != nil || r.Pid != after.Pid {
		t.Fatalf("after a failed reload: %+v, %v; want the running process %d", r, err, after.Pid)
	}
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("process %d still runs", pid)
		}
		return nil
	})
}

// waitInFlight waits until n calls run on the current process of s.
func waitInFlight(t *testing.T, s *supervisor, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cur == nil || s.cur.inflight != n {
			got := -1
			if s.cur != nil {
				got = s.cur.inflight
			}
			return fmt.Errorf("%d calls in flight on the current process, want %d", got, n)
		}
		return nil
	})
}

// TestRestartIntensity crashes chaos over and over: past the intensity the
// manager is degraded, and it recovers once the plugin stays up.
func TestRestartIntensity(t *testing.T) {
	_, chaos := buildPlugins(t)
	const window = 2 * time.Second
	m := startWith(t, func(c *Config) { c.MaxRestarts, c.RestartWindow = 2, window }, chaos)
	if bad, why := m.Degraded(); bad {
		t.Fatalf("degraded at start: %s", why)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		_, _ = m.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("x", "chaos.exit", "k", "{}")}})
		if bad, _ := m.Degraded(); !bad {
			return fmt.Errorf("not degraded after %d restarts", m.Restarts())
		}
		return nil
	})
	bad, why := m.Degraded()
	t.Logf("degraded after %d restarts: %s", m.Restarts(), why)
	if !bad || !strings.Contains(why, "chaos") || m.Restarts() <= 2 {
		t.Fatalf("Degraded() = %v %q with %d restarts", bad, why, m.Restarts())
	}
	// Left alone, the watcher brings it back; a window later it is healthy.
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, err := chaosCall(t, m, "chaos.echo", "1"); err != nil {
			return fmt.Errorf("chaos.echo: %v", err)
		}
		if bad, why := m.Degraded(); bad {
			return fmt.Errorf("still degraded although the plugin stays up: %s", why)
		}
		return nil
	})
}

// TestWatcherRestartsIdlePlugin kills an idle plugin: it is relaunched
// without any call asking for it.
func TestWatcherRestartsIdlePlugin(t *testing.T) {
	donations, _ := buildPlugins(t)
	m := startWith(t, nil, donations)
	sup := m.sups[0]
	pid := sup.pid()
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if p := sup.pid(); p == 0 || p == pid || !alive(p) {
			return fmt.Errorf("the killed plugin %d is not restarted: current pid %d", pid, p)
		}
		return nil
	})
	t.Logf("plugin back %v after SIGKILL, with no call waiting", time.Since(start))
	if m.Restarts() != 1 {
		t.Fatalf("Restarts() = %d, want 1", m.Restarts())
	}
	checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))
}

// TestMessageLimit sets the smallest limit: a request or a reply over it
// fails with ErrMessageTooLarge saying which, and the plugin keeps working.
func TestMessageLimit(t *testing.T) {
	_, chaos := buildPlugins(t)
	const limit = 4 << 20
	m := startWith(t, func(c *Config) { c.MaxMessageBytes = limit }, chaos)
	pid := m.sups[0].pid()

	_, err := chaosCall(t, m, "chaos.big", fmt.Sprint(limit+1))
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), "reply") {
		t.Fatalf("oversize reply: %v, want ErrMessageTooLarge about the reply", err)
	}
	t.Logf("oversize reply: %v", err)
	big, _ := json.Marshal(strings.Repeat("y", limit))
	_, err = m.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("j", "chaos.echo", "k", string(big))}})
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), "request") {
		t.Fatalf("oversize request: %v, want ErrMessageTooLarge about the request", err)
	}
	// Just under the limit passes both ways.
	if _, err := chaosCall(t, m, "chaos.big", fmt.Sprint(limit-1024)); err != nil {
		t.Fatalf("reply under the limit: %v", err)
	}
	if p := m.sups[0].pid(); p != pid {
		t.Fatalf("the plugin was replaced (%d → %d) over a message size", pid, p)
	}
}

// pythonPlugin is the Python example, or a skip when Python's gRPC is
// missing (scripts/deps.sh installs it on Debian).
func pythonPlugin(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs plugin processes")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf, cryptography").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with grpc, protobuf and cryptography; run make deps (apt-get install python3-grpcio python3-protobuf python3-cryptography)")
	}
	path, err := filepath.Abs("../../examples/python-donations/donations_plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPythonPlugin runs the Python donations plugin through the host and
// checks it answers exactly as the Go one does.
func TestPythonPlugin(t *testing.T) {
	py := pythonPlugin(t)
	donations, _ := buildPlugins(t)
	mp := startWith(t, nil, py)
	mg := startWith(t, nil, donations)
	if got := mp.Plugins(); len(got) != 1 || got[0] != "donations@0.1.0-python" {
		t.Fatalf("Plugins() = %v", got)
	}
	if hp, hg := mp.Handlers(), mg.Handlers(); hp["donor.donate"].PayloadShape != hg["donor.donate"].PayloadShape ||
		hp["campaign.credit"].Timeout != hg["campaign.credit"].Timeout ||
		hp["donor.donate"].PayloadClosed != hg["donor.donate"].PayloadClosed || !hp["donor.donate"].PayloadClosed ||
		hp["campaign.credit"].Internal != hg["campaign.credit"].Internal || !hp["campaign.credit"].Internal {
		t.Fatalf("Python declares %+v, Go %+v", hp, hg)
	}
	checkDonationOutcomes(t, mustHandle(t, mp, donationBatch()))

	// Edge cases side by side: every outcome but the wording of an error.
	req := &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{
			{Type: "donor", Key: "bob", State: []byte(`{"total_cents":999,"count":3,"zakat_cents":24}`)},
			{Type: "campaign", Key: "wells", State: []byte(`{"total_cents":5,"count":1}`)},
			{Type: "donor", Key: "broken", State: []byte(`{"total_cents":`)},
		},
		Jobs: []*pluginpb.Job{
			job("1", "donor.donate", "bob", `{"amount_cents":1,"campaign":"wells","note":"extra fields are ignored"}`),
			job("2", "donor.donate", "bob", `{"amount_cents":-5,"campaign":"wells"}`),
			job("3", "donor.donate", "bob", `{"amount_cents":"5","campaign":"wells"}`),
			job("4", "donor.donate", "bob", `{"amount_cents":7}`),
			job("5", "donor.donate", "bob", `not json`),
			job("6", "donor.donate", "bob", ``),
			job("7", "campaign.credit", "wells", `{"amount_cents":40,"donor":"bob"}`),
			job("8", "donor.donate", "broken", `{"amount_cents":1,"campaign":"c"}`),
			job("9", "donor.donate", "bob", `{"amount_cents":123456789,"campaign":"wells"}`),
		},
	}
	outP, outG := mustHandle(t, mp, req), mustHandle(t, mg, req)
	for i := range outG {
		p, g := proto.Clone(outP[i]).(*pluginpb.Outcome), proto.Clone(outG[i]).(*pluginpb.Outcome)
		if g.GetStatus() == pluginpb.Outcome_OK {
			if p.GetError() != g.GetError() {
				t.Errorf("job %s: error %q from Python, %q from Go", g.GetJobId(), p.GetError(), g.GetError())
			}
		} else if p.GetError() == "" {
			t.Errorf("job %s: Python gave no reason for %v", g.GetJobId(), p.GetStatus())
		}
		p.Error, g.Error = "", ""
		if !proto.Equal(p, g) {
			t.Errorf("job %s: Python %v\n Go %v", g.GetJobId(), p, g)
		}
	}

	// SIGKILLed, it comes back like a Go plugin.
	pid := mp.sups[0].pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	checkDonationOutcomes(t, mustHandle(t, mp, donationBatch()))
	if p := mp.sups[0].pid(); p == pid {
		t.Fatal("the killed Python plugin still counts as running")
	}
	// Stop shuts it down through go-plugin's controller, not a kill timeout.
	start := time.Now()
	mp.Stop()
	t.Logf("Python plugin stopped in %v", time.Since(start))
}

// TestPluginRequiresMTLS dials a plugin's address as another local
// process would, without the worker's certificate: AutoMTLS refuses it, for
// the Go plugin and the Python one alike.
func TestPluginRequiresMTLS(t *testing.T) {
	donations, _ := buildPlugins(t)
	t.Run("go", func(t *testing.T) { checkRequiresMTLS(t, donations) })
	t.Run("python", func(t *testing.T) { checkRequiresMTLS(t, pythonPlugin(t)) })
}

func checkRequiresMTLS(t *testing.T, path string) {
	m := startWith(t, nil, path)
	sup := m.sups[0]
	sup.mu.Lock()
	rc := sup.cur.client.ReattachConfig()
	sup.mu.Unlock()
	if rc == nil || rc.Addr == nil {
		t.Fatal("no plugin address")
	}
	// A stranger with a certificate of its own, trusting anything the
	// plugin presents, is refused too.
	stranger, err := pki.NewCA("stranger", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	is, err := stranger.Issue(pki.Request{Name: "stranger", Role: pki.RoleAdmin, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for what, creds := range map[string]credentials.TransportCredentials{
		"plaintext": insecure.NewCredentials(),
		"a certificate not the worker's": credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair},
			InsecureSkipVerify: true, ServerName: "localhost"}),
	} {
		conn, err := grpc.Dial("passthrough:///plugin", grpc.WithTransportCredentials(creds),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, rc.Addr.Network(), rc.Addr.String())
			}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = pluginpb.NewHandlerClient(conn).Describe(ctx, &pluginpb.DescribeRequest{})
		cancel()
		conn.Close()
		if err == nil {
			t.Fatalf("a client with %s called the plugin", what)
		}
		t.Logf("call with %s refused: %v", what, err)
	}
	// The worker's own connection still works.
	checkDonationOutcomes(t, mustHandle(t, m, donationBatch()))
}

// TestWithheldEnv: a plugin gets the worker's environment but the
// variables Config.WithheldEnv names, and the AutoMTLS certificate.
func TestWithheldEnv(t *testing.T) {
	_, chaos := buildPlugins(t)
	t.Setenv("CORRAL_TEST_SECRET", "s3cret")
	t.Setenv("CORRAL_TEST_PLAIN", "plain")
	m := startWith(t, func(c *Config) { c.WithheldEnv = []string{"CORRAL_TEST_SECRET"} }, chaos)
	r, err := chaosCall(t, m, "chaos.echo", "{}")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(r.Env, "\n")
	if strings.Contains(got, "CORRAL_TEST_SECRET") || strings.Contains(got, "s3cret") {
		t.Errorf("the plugin was handed a withheld variable:\n%s", got)
	}
	for _, want := range []string{"CORRAL_TEST_PLAIN=plain", "PLUGIN_CLIENT_CERT=", plugins.MaxMessageEnv + "="} {
		if !strings.Contains(got, want) {
			t.Errorf("the plugin's environment lacks %s", want)
		}
	}
}

// TestKillMidCall SIGKILLs chaos while it works on a batch: the call is
// sent once more to a relaunched process (Handle has no side effects in
// the plugin), so the caller gets the new process's reply, or an error to
// retry the batch on; never the dead process's half-done work.
func TestKillMidCall(t *testing.T) {
	_, chaos := buildPlugins(t)
	m := startWith(t, nil, chaos)
	pid := m.sups[0].pid()
	type reply struct {
		r   echoResult
		err error
	}
	done := make(chan reply, 1)
	go func() {
		r, err := chaosCall(t, m, "chaos.slow", "800")
		done <- reply{r, err}
	}()
	waitInFlight(t, m.sups[0], 1)
	time.Sleep(100 * time.Millisecond) // the kill lands while the plugin works on the call
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := <-done
	switch {
	case got.err != nil:
		t.Logf("call failed, the worker would retry the batch: %v", got.err)
	case got.r.Pid == pid:
		t.Fatalf("a reply came from the killed process %d", pid)
	default:
		t.Logf("call re-sent to the relaunched process %d", got.r.Pid)
	}
	if m.Restarts() < 1 {
		t.Fatalf("Restarts() = %d after a kill", m.Restarts())
	}
	if r, err := chaosCall(t, m, "chaos.echo", "1"); err != nil || r.Pid == pid {
		t.Fatalf("after the kill: %+v, %v", r, err)
	}
}
