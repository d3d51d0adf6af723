package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"path/filepath"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// infoLogger logs at the default level, to the test and to buf.
func infoLogger(t *testing.T, buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(tWriter{t}, buf), nil))
}

// checkBadstartError checks the error of launching testdata/badstart: its
// own last stderr lines and exit status, not go-plugin's guesses.
func checkBadstartError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("launching badstart succeeded")
	}
	msg := err.Error()
	for _, want := range []string{
		"exited before the handshake", "exit status 3", "last 10 of 14 stderr lines",
		"\n  config missing: INVENTORY_DB_URL", "\n  ERROR cannot reach the database db=inventory",
		"reading setting 5 of 12",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the launch error does not say %q:\n%s", want, msg)
		}
	}
	for _, unwanted := range []string{"reading setting 4 of 12", "not compiled for this architecture"} {
		if strings.Contains(msg, unwanted) {
			t.Errorf("the launch error says %q:\n%s", unwanted, msg)
		}
	}
	var le *LaunchError
	if !errors.As(err, &le) || le.Exit != "exit status 3" || len(le.Stderr) != 10 || le.StderrLines != 14 ||
		le.Stderr[9] != "config missing: INVENTORY_DB_URL" {
		t.Errorf("LaunchError = %#v", le)
	}
}

// TestLaunchErrorShowsStderr launches a plugin that says on stderr what it
// misses and exits 3 before the handshake: the error of Start, and of a
// reload to it, carry its last stderr lines and exit status, and a reload
// logs them at the default level.
func TestLaunchErrorShowsStderr(t *testing.T) {
	_, chaos := buildPlugins(t)

	t.Run("start", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Paths = []string{built.badstart}
		cfg.Logger = infoLogger(t, &syncBuffer{})
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop()
		err = m.Start(context.Background())
		checkBadstartError(t, err)
		t.Logf("Start: %v", err)
	})

	t.Run("reload", func(t *testing.T) {
		var logs syncBuffer
		exe := filepath.Join(t.TempDir(), "chaos")
		copyExe(t, chaos, exe)
		m := startWith(t, func(c *Config) { c.Logger = infoLogger(t, &logs) }, exe)
		copyExe(t, built.badstart, exe)
		_, err := m.Reload(context.Background())
		checkBadstartError(t, err)
		if !strings.Contains(logs.String(), "config missing: INVENTORY_DB_URL") {
			t.Errorf("the log at the default level does not have the plugin's stderr:\n%s", logs.String())
		}
		st := m.PluginStatus()
		if len(st) != 1 || !strings.Contains(st[0].Refused, "reload failed") || !strings.Contains(st[0].Refused, "exit status 3") ||
			!strings.Contains(st[0].Refused, "INVENTORY_DB_URL") || st[0].RefusedSHA256 != sha256Hex(t, built.badstart) {
			t.Fatalf("PluginStatus() = %+v", st)
		}
		if _, err := chaosCall(t, m, "chaos.echo", "1"); err != nil {
			t.Fatalf("the running plugin stopped serving: %v", err)
		}
	})
}

// waitRelaunched calls chaos.echo until a process other than pid answers.
func waitRelaunched(t *testing.T, m *Manager, pid int) echoResult {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := chaosCall(t, m, "chaos.echo", "1")
		if err == nil && r.Pid != pid {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin was not relaunched after %d died: %+v, %v", pid, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func kill(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// TestCrashAfterFailedReloadRelaunchesLastGood reloads to a broken binary,
// which is refused, then SIGKILLs the running plugin: the supervisor
// relaunches its last good copy, not the broken file at the path, and the
// plugin keeps handling jobs.
func TestCrashAfterFailedReloadRelaunchesLastGood(t *testing.T) {
	_, chaos := buildPlugins(t)
	exe := filepath.Join(t.TempDir(), "chaos")
	copyExe(t, chaos, exe)
	good := sha256Hex(t, exe)
	m := startWith(t, nil, exe)
	before, err := chaosCall(t, m, "chaos.echo", "1")
	if err != nil {
		t.Fatal(err)
	}

	copyExe(t, built.badstart, exe)
	if _, err := m.Reload(context.Background()); err == nil {
		t.Fatal("reload to a broken binary succeeded")
	}
	kill(t, before.Pid)
	after := waitRelaunched(t, m, before.Pid)
	if after.Version != "6.6.6" {
		t.Fatalf("relaunched %+v, want version 6.6.6", after)
	}
	exeLink, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", after.Pid))
	if err == nil && !strings.HasPrefix(exeLink, m.cacheDir+string(filepath.Separator)) {
		t.Errorf("relaunched from %s, want the copy in %s", exeLink, m.cacheDir)
	}
	for i := range 5 {
		if r, err := chaosCall(t, m, "chaos.echo", fmt.Sprint(i)); err != nil || r.Pid != after.Pid {
			t.Fatalf("job %d after the relaunch: %+v, %v", i, r, err)
		}
	}
	if bad, why := m.Degraded(); bad {
		t.Errorf("degraded after one crash: %s", why)
	}
	st := m.PluginStatus()
	if len(st) != 1 || st[0].Name != "chaos" || st[0].Version != "6.6.6" || st[0].SHA256 != good ||
		!strings.Contains(st[0].Refused, "reload failed") || !strings.Contains(st[0].Refused, "exit status 3") ||
		st[0].RefusedSHA256 != sha256Hex(t, built.badstart) {
		t.Fatalf("PluginStatus() = %+v", st)
	}
	t.Logf("status: %+v", st[0])
}

// TestCrashRelaunchesLaunchedVersion overwrites the plugin's path after a
// good launch and crashes the plugin: the relaunched process is still the
// launched version, until a reload runs the new file. A copy that no
// longer has its checksum is not run.
func TestCrashRelaunchesLaunchedVersion(t *testing.T) {
	_, chaos := buildPlugins(t)
	exe := filepath.Join(t.TempDir(), "chaos")
	copyExe(t, chaos, exe)
	v1 := sha256Hex(t, exe)
	v2 := sha256Hex(t, built.chaosV2)
	m := startWith(t, nil, exe)
	before, err := chaosCall(t, m, "chaos.echo", "1")
	if err != nil {
		t.Fatal(err)
	}

	copyExe(t, built.chaosV2, exe)
	if st := m.PluginStatus(); len(st) != 1 || st[0].SHA256 != v1 || st[0].RefusedSHA256 != v2 ||
		!strings.Contains(st[0].Refused, "not loaded") {
		t.Fatalf("after the file changed, PluginStatus() = %+v", st)
	}
	kill(t, before.Pid)
	if r := waitRelaunched(t, m, before.Pid); r.Version != "6.6.6" {
		t.Fatalf("after a crash the plugin runs %+v, want the launched 6.6.6", r)
	}

	// A reload runs the new file and makes it the one relaunched.
	changes, err := m.ReloadChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := PluginChange{Name: "chaos", From: "6.6.6", To: "6.6.7", FromSHA256: v1, ToSHA256: v2}
	if len(changes) != 1 || changes[0] != want {
		t.Fatalf("ReloadChanges = %+v, want %+v", changes, want)
	}
	if st := m.PluginStatus(); len(st) != 1 || st[0].SHA256 != v2 || st[0].Refused != "" || st[0].Version != "6.6.7" {
		t.Fatalf("after the reload PluginStatus() = %+v", st)
	}
	upgraded, err := chaosCall(t, m, "chaos.echo", "2")
	if err != nil || upgraded.Version != "6.6.7" {
		t.Fatalf("after the reload: %+v, %v", upgraded, err)
	}
	copyExe(t, chaos, exe)
	kill(t, upgraded.Pid)
	if r := waitRelaunched(t, m, upgraded.Pid); r.Version != "6.6.7" {
		t.Fatalf("after a crash the plugin runs %+v, want the reloaded 6.6.7", r)
	}

	// The copy is checked before it runs: a damaged one is refused, and
	// neither it nor the file at the path (v1 again) is run instead.
	sup := m.sups[0]
	sup.mu.Lock()
	copyPath := sup.good.copy
	pid := sup.cur.pid
	sup.mu.Unlock()
	// It runs, so replace rather than write it.
	if err := os.WriteFile(copyPath+".x", []byte("#!/bin/sh\nexit 0\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(copyPath+".x", copyPath); err != nil {
		t.Fatal(err)
	}
	kill(t, pid)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := chaosCall(t, m, "chaos.echo", "3")
		if err == nil && r.Pid != pid {
			t.Fatalf("a damaged copy was relaunched as %+v", r)
		}
		if err != nil && strings.Contains(err.Error(), ErrChecksumMismatch.Error()) {
			t.Logf("refused: %v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checksum error after the copy was damaged: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	dir := m.cacheDir
	stopAt := time.Now()
	m.Stop()
	t.Logf("stopped in %v", time.Since(stopAt))
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cache dir %s is left after Stop: %v", dir, err)
	}
}

// TestCacheDir checks the manager's cache folder: made by Start under
// Config.CacheDir, removed by Stop, and the folders of dead workers
// removed by the next Start.
func TestCacheDir(t *testing.T) {
	_, chaos := buildPlugins(t)
	base := filepath.Join(t.TempDir(), "cache")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(base, fmt.Sprintf("%s%d-x", cacheDirPrefix, dead.Process.Pid))
	live := filepath.Join(base, fmt.Sprintf("%s%d-x", cacheDirPrefix, os.Getppid()))
	other := filepath.Join(base, cacheDirPrefix+"notapid-x")
	for _, d := range []string{stale, live, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m := startWith(t, func(c *Config) { c.CacheDir = base }, chaos)
	if filepath.Dir(m.cacheDir) != base {
		t.Fatalf("cache dir %s is not in %s", m.cacheDir, base)
	}
	if fi, err := os.Stat(m.cacheDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v, %v", fi, err)
	}
	if _, err := os.Stat(stale); runtime.GOOS == "linux" && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the folder of a dead worker is left: %v", err)
	}
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	// A reload of the unchanged file keeps its copy; one of a new file
	// replaces it.
	copies := func() []string {
		names, _ := filepath.Glob(filepath.Join(m.cacheDir, "*"))
		return names
	}
	before := copies()
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := copies(); len(before) != 1 || len(after) != 1 || after[0] != before[0] {
		t.Fatalf("copies before a reload of the same file %v, after %v", before, after)
	}
	exe := filepath.Join(t.TempDir(), "chaos")
	copyExe(t, chaos, exe)
	m2 := startWith(t, func(c *Config) { c.CacheDir = base }, exe)
	copyExe(t, built.chaosV2, exe)
	if _, err := m2.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(m2.cacheDir, "*"))
	if len(names) != 1 || !strings.HasSuffix(names[0], sha256Hex(t, built.chaosV2)[:16]) {
		t.Fatalf("after an upgrade the copies are %v", names)
	}
	dir := m.cacheDir
	m.Stop()
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cache dir %s is left after Stop: %v", dir, err)
	}
}
