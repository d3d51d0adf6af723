package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// Restart backoff: the first relaunch after a crash is immediate; if the
// new process dies young too, the next waits 100ms after its launch, then
// 200ms, ... up to 5s. A process that stayed up for stableAfter resets the
// count, as if it never crashed.
const (
	minRestartDelay = 100 * time.Millisecond
	maxRestartDelay = 5 * time.Second
	stableAfter     = 30 * time.Second
	// watchEvery is how often a supervisor looks for a dead process to
	// relaunch when no call comes to find it.
	watchEvery = 50 * time.Millisecond
)

// restartDelay is how long after the previous launch the next may start,
// given how many launches in a row died young (the first launch counts).
func restartDelay(crashes int) time.Duration {
	if crashes <= 1 {
		return 0
	}
	d := minRestartDelay
	for i := 2; i < crashes && d < maxRestartDelay; i++ {
		d *= 2
	}
	return min(d, maxRestartDelay)
}

// proc is one plugin process. Calls hold it while they run, so a process
// replaced by a reload serves its in-flight calls before it is killed.
type proc struct {
	client   *plugin.Client
	rpc      pluginpb.HandlerClient
	hostID   uint32 // broker id of the Host service offered to it; 0 = none
	desc     *pluginpb.DescribeResponse
	pid      int
	launched time.Time
	bin      *binary     // what it runs
	cmd      *exec.Cmd   // ProcessState is set once client.Exited()
	stderr   *stderrTail // its last stderr lines

	inflight int  // calls running on it; guarded by the supervisor's mu
	retiring bool // kill once inflight reaches 0
}

// supervisor owns one plugin binary: its current process, relaunching it
// when it dies, retiring it when a call shows it is stuck, and replacing it
// on reload.
type supervisor struct {
	path  string // absolute
	index int    // in Config.Paths
	m     *Manager
	log   *pluginLog
	pname string // the declared name; set by start, never changes after

	mu         sync.Mutex
	cur        *proc                      // nil when no process is running
	desc       *pluginpb.DescribeResponse // of the current (or last) process
	stopped    bool
	crashes    int // launches in a row that did not stay up for stableAfter
	lastLaunch time.Time
	lastErr    error
	restarts   []time.Time // relaunches within the restart window
	tripped    bool        // past the restart intensity, not yet recovered
	tripReason string
	live       map[*proc]struct{} // every process not yet killed
	good       *binary            // of the current (or last) process; relaunched after a crash
	refused    *refusal           // the last file at the path a reload failed to run
	warnedSum  []byte             // the file at the path last warned about on relaunch

	sumMu sync.Mutex  // guards the cache of pathSum
	sumOf os.FileInfo // of the file last hashed at the path
	sum   []byte

	done chan struct{} // closed by stop: ends watch
}

func newSupervisor(m *Manager, index int, path string) *supervisor {
	return &supervisor{path: path, index: index, m: m, log: newPluginLog(m.log, filepath.Base(path)),
		live: map[*proc]struct{}{}, done: make(chan struct{})}
}

// start launches the plugin for the first time and starts watching it.
func (s *supervisor) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastLaunch = s.m.now()
	s.crashes = 1
	p, _, err := s.launch(ctx)
	if err != nil {
		return err
	}
	s.live[p] = struct{}{}
	s.cur, s.desc, s.good = p, p.desc, p.bin
	s.pname = p.desc.GetName()
	s.log.setName(s.m.log, s.pname)
	s.m.bg.Add(1)
	go s.watch()
	return nil
}

// watch relaunches a dead process even when no call comes, so the plugin
// is back (and the restart counted) before the next batch needs it.
func (s *supervisor) watch() {
	defer s.m.bg.Done()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if !s.stopped && (s.cur == nil || s.cur.client.Exited()) {
			_ = s.ensureLocked()
		}
		s.mu.Unlock()
	}
}

// launch starts a process from the file at the plugin's path, for Start
// and Reload: it copies the file to the cache dir (the binary a later
// relaunch runs), checks the pinned checksum, if any, against the copy,
// then starts the path and describes the process. The path must still hold
// the copied file when it is exec'd. On error, the binary is returned when
// the file could be read, for the caller to record or discard.
func (s *supervisor) launch(ctx context.Context) (*proc, *binary, error) {
	fail := func(err error) error {
		return fmt.Errorf("launch plugin %s: %w", s.path, err)
	}
	want, err := s.m.pinnedChecksum(s.path)
	if err != nil {
		return nil, nil, fail(err)
	}
	bin, fi, err := s.snapshot()
	if err != nil {
		return nil, nil, fail(err)
	}
	if want != nil {
		if !bytes.Equal(bin.sum, want) {
			return nil, bin, fail(fmt.Errorf("%w: %s has sha256 %x, but %x is pinned; refusing to run it",
				ErrChecksumMismatch, s.path, bin.sum, want))
		}
		bin.pinned, fi = true, nil // hashed again right before exec
	}
	p, err := s.exec(ctx, s.path, s.path, bin, fi)
	if err != nil {
		return nil, bin, err
	}
	return p, bin, nil
}

// relaunch starts the last good binary again, after a crash or a hang: from
// the plugin's path while that still holds the same file, else from its
// copy, whatever the path holds now (a reload, not a crash, runs a new
// file). Callers hold s.mu.
func (s *supervisor) relaunch(ctx context.Context) (*proc, error) {
	bin := s.good
	sum, fi, err := s.pathSum()
	if err == nil && bytes.Equal(sum, bin.sum) {
		if bin.pinned {
			fi = nil // hashed again right before exec
		}
		p, err := s.exec(ctx, s.path, s.path, bin, fi)
		if !errors.Is(err, ErrChecksumMismatch) {
			return p, err
		}
		sum, err = nil, errors.New("it changed while it was being relaunched")
	}
	if err != nil || !bytes.Equal(sum, s.warnedSum) {
		s.warnedSum = sum
		what := fmt.Sprintf("sha256 %.8x", sum)
		if err != nil {
			what = err.Error()
		}
		s.log.slog().Warn("the plugin's file is not the binary last launched; relaunching the last good copy (a reload runs the new file)",
			"path", s.path, "file", what, "running", fmt.Sprintf("sha256 %.8x", bin.sum), "copy", bin.copy)
	}
	return s.exec(ctx, bin.copy, s.path+" (last good copy "+bin.copy+")", bin, nil)
}

// exec starts file, which must be bin, and describes the process; label
// names it in errors. That file is bin is checked right before exec: when
// same is given (the file's identity when it was hashed), by its identity,
// size and modification time; otherwise by hashing it again (go-plugin's
// SecureConfig), as for a pinned binary or the copy. A process that does
// not come up is reported as a LaunchError with how it ended and its last
// stderr lines.
func (s *supervisor) exec(ctx context.Context, file, label string, bin *binary, same os.FileInfo) (*proc, error) {
	fail := func(err error) (*proc, error) {
		return nil, fmt.Errorf("launch plugin %s: %w", label, err)
	}
	changed := func() (*proc, error) {
		return fail(fmt.Errorf("%w: %s no longer has sha256 %x; refusing to run it", ErrChecksumMismatch, file, bin.sum))
	}
	var secure *plugin.SecureConfig
	if same == nil {
		secure = &plugin.SecureConfig{Checksum: bin.sum, Hash: sha256.New()}
	} else if fi, err := os.Stat(file); err != nil || !sameFile(fi, same) {
		return changed()
	}
	cmd := exec.Command(file)
	cmd.Env = append(pluginEnv(os.Environ(), s.m.cfg.WithheldEnv), plugins.MaxMessageEnv+"="+strconv.Itoa(s.m.cfg.MaxMessageBytes))
	dieWithParent(cmd)
	tail := &stderrTail{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake,
		Plugins:          plugins.HostPluginSet(s.m.cfg.Host),
		Cmd:              cmd,
		SecureConfig:     secure,
		AutoMTLS:         true, // every plugin, whatever its language: docs/plugins.md#security
		SkipHostEnv:      true, // cmd.Env has the environment, less Config.WithheldEnv
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  plugins.DialOptions(s.m.cfg.MaxMessageBytes),
		StartTimeout:     s.m.cfg.StartTimeout,
		Logger:           s.log.hclog(),
		// Raw stderr: go-plugin also logs each line through Logger, as
		// before, but a plain-text line only at debug level.
		Stderr:     tail.writer(),
		SyncStdout: s.log.stdio("stdout"),
		SyncStderr: io.MultiWriter(s.log.stdio("stderr"), tail.writer()),
	})
	// killed stops the process and, since Kill waits for go-plugin's
	// goroutines, can then say how it ended and what it last wrote.
	killed := func(err error, handshake bool) (*proc, error) {
		exited := client.Exited()
		client.Kill()
		le := &LaunchError{Path: label, Err: err}
		// A failed handshake ended the process (go-plugin SIGKILLs it if
		// it did not exit); later on, only a process that exited before
		// this Kill ended by itself.
		if handshake || exited {
			le.Exit = exitOf(cmd)
		}
		le.Stderr, le.StderrLines = tail.last()
		return nil, le
	}
	conn, err := client.Client()
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		client.Kill()
		return changed()
	}
	if err != nil {
		return killed(err, true)
	}
	raw, err := conn.Dispense(plugins.PluginName)
	if err != nil {
		return killed(err, false)
	}
	pc, ok := raw.(*plugins.Conn)
	if !ok {
		return killed(fmt.Errorf("dispensed %T, want a Handler client", raw), false)
	}
	rpc := pc.HandlerClient
	dctx, cancel := context.WithTimeout(ctx, s.m.cfg.StartTimeout)
	defer cancel()
	desc, err := rpc.Describe(dctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return killed(fmt.Errorf("describe: %w", err), false)
	}
	if err := checkDescribe(desc); err != nil {
		return killed(err, false)
	}
	p := &proc{client: client, rpc: rpc, hostID: pc.HostServiceID, desc: desc, launched: s.m.now(),
		bin: bin, cmd: cmd, stderr: tail}
	if rc := client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	return p, nil
}

func checkDescribe(d *pluginpb.DescribeResponse) error {
	if d.GetName() == "" {
		return errors.New("describe: empty plugin name")
	}
	if len(d.GetHandlers()) == 0 {
		return fmt.Errorf("describe: plugin %s serves no handlers", d.GetName())
	}
	seen := make(map[string]bool, len(d.GetHandlers()))
	for _, h := range d.GetHandlers() {
		switch {
		case h.GetName() == "":
			return fmt.Errorf("describe: plugin %s declares a handler with an empty name", d.GetName())
		case seen[h.GetName()]:
			return fmt.Errorf("describe: plugin %s declares handler %q twice", d.GetName(), h.GetName())
		case h.GetTimeoutMs() < 0 || h.GetMaxAttempts() < 0 || h.GetConcurrency() < 0:
			return fmt.Errorf("describe: plugin %s handler %q has a negative timeout, max attempts or concurrency", d.GetName(), h.GetName())
		}
		seen[h.GetName()] = true
	}
	return nil
}

// acquire returns a running process for one call, relaunching the plugin
// first if its process exited or was retired. The caller must release it.
func (s *supervisor) acquire() (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLocked(); err != nil {
		return nil, err
	}
	s.cur.inflight++
	return s.cur, nil
}

// release ends a call on p; the last call on a retired process kills it.
func (s *supervisor) release(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.inflight--
	if p.retiring && p.inflight == 0 {
		s.killLater(p)
	}
}

// ensureLocked makes s.cur a running process, relaunching with backoff.
func (s *supervisor) ensureLocked() error {
	if s.stopped {
		return ErrStopped
	}
	if s.cur != nil && !s.cur.client.Exited() {
		return nil
	}
	if s.cur != nil {
		// Exited: go-plugin has read all its stderr and reaped it.
		attrs := []any{"pid", s.cur.pid, "exit", s.cur.cmd.ProcessState.String()}
		if lines, _ := s.cur.stderr.last(); len(lines) > 0 {
			attrs = append(attrs, "stderr", lines)
		}
		s.log.slog().Warn("plugin process exited; restarting it", attrs...)
		s.cur.retiring = true
		if s.cur.inflight == 0 {
			s.killLater(s.cur) // reaps it and closes its connection
		}
		s.cur = nil
	}

	now := s.m.now()
	if now.Sub(s.lastLaunch) >= stableAfter {
		s.crashes = 0
	}
	if next := s.lastLaunch.Add(restartDelay(s.crashes)); now.Before(next) {
		return fmt.Errorf("%w: plugin %s died %d times in a row, next restart in %v (last error: %v)",
			ErrPluginUnavailable, s.name(), s.crashes, next.Sub(now).Round(time.Millisecond), s.lastErr)
	}
	s.lastLaunch = now
	s.crashes++
	s.countRestart(now)
	// Not a caller's context: a relaunch that outlives one caller's
	// deadline still serves the next caller.
	p, err := s.relaunch(context.Background())
	if err == nil {
		s.live[p] = struct{}{}
		err = sameHandlers(s.desc, p.desc)
		if err != nil {
			s.killLater(p)
		}
	}
	if err != nil {
		s.lastErr = err
		s.log.slog().Error("plugin restart failed", "err", err, "crashes", s.crashes)
		return fmt.Errorf("%w: %w", ErrPluginUnavailable, err)
	}
	s.cur, s.desc = p, p.desc
	s.log.slog().Info("plugin restarted", "version", p.desc.GetVersion(), "pid", p.pid, "crashes", s.crashes,
		"took", s.m.now().Sub(now).Round(time.Millisecond))
	if f := s.m.cfg.OnRestart; f != nil {
		go f(s.name(), p.desc.GetVersion()) // not under the supervisor's lock
	}
	return nil
}

// countRestart records a relaunch and trips the restart intensity.
func (s *supervisor) countRestart(now time.Time) {
	s.m.restarts.Add(1)
	window := s.m.cfg.RestartWindow
	kept := s.restarts[:0]
	for _, t := range s.restarts {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	s.restarts = append(kept, now)
	if len(s.restarts) > s.m.cfg.MaxRestarts && !s.tripped {
		s.tripped = true
		s.tripReason = fmt.Sprintf("plugin %s restarted %d times within %v (intensity limit %d)",
			s.name(), len(s.restarts), window, s.m.cfg.MaxRestarts)
		s.log.slog().Error("plugin past its restart intensity; worker degraded", "restarts", len(s.restarts), "window", window)
	}
}

// degraded reports whether the plugin is past its restart intensity. It
// recovers once a process has stayed up for a whole restart window.
func (s *supervisor) degraded() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tripped {
		return false, ""
	}
	if s.cur != nil && !s.cur.client.Exited() && s.m.now().Sub(s.cur.launched) >= s.m.cfg.RestartWindow {
		s.tripped = false
		s.log.slog().Info("plugin recovered from its restart intensity", "up_for", s.m.now().Sub(s.cur.launched).Round(time.Millisecond))
		return false, ""
	}
	reason := s.tripReason
	if s.lastErr != nil && s.cur == nil {
		reason += "; last error: " + s.lastErr.Error()
	}
	return true, reason
}

// sameHandlers rejects a relaunched binary that dropped handlers the
// manager routes to it (say, replaced on disk): its jobs would otherwise be
// dead-lettered as unknown instead of retried.
func sameHandlers(before, after *pluginpb.DescribeResponse) error {
	if before.GetName() != after.GetName() {
		return fmt.Errorf("plugin %s now calls itself %s", before.GetName(), after.GetName())
	}
	now := make(map[string]bool, len(after.GetHandlers()))
	for _, h := range after.GetHandlers() {
		now[h.GetName()] = true
	}
	for _, h := range before.GetHandlers() {
		if !now[h.GetName()] {
			return fmt.Errorf("plugin %s no longer serves %s", before.GetName(), h.GetName())
		}
	}
	return nil
}

// retire stops using p: the next call launches a new process. Only the
// first caller to see a given process fail retires it. A stuck process is
// killed at once, failing its other calls, which are retried.
func (s *supervisor) retire(p *proc, reason string, hung bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != p {
		return
	}
	s.log.slog().Warn("retiring plugin process", "reason", reason, "pid", p.pid)
	s.cur = nil
	p.retiring = true
	s.killLater(p)
	if hung {
		// We killed it; it did not crash. Its replacement starts at once, so
		// a hung call costs its deadline and no crash backoff on top (the
		// restart still counts towards the restart intensity).
		s.crashes, s.lastLaunch = 0, time.Time{}
	}
}

// replace makes next the current process, and its binary the last good
// one; the old process finishes its in-flight calls and is then killed. It
// returns what ran before.
func (s *supervisor) replace(next *proc) (*pluginpb.DescribeResponse, *binary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldDesc, oldBin := s.desc, s.good
	if s.stopped {
		next.client.Kill()
		return oldDesc, oldBin
	}
	s.live[next] = struct{}{}
	old := s.cur
	s.cur, s.desc, s.good, s.refused = next, next.desc, next.bin, nil
	if oldBin != nil && oldBin.copy != next.bin.copy {
		_ = os.Remove(oldBin.copy) // a process still running it keeps its file
	}
	// A deliberate upgrade is a fresh start: forget the crashes of the
	// version it replaces.
	s.crashes, s.lastLaunch, s.lastErr, s.restarts, s.tripped = 1, s.m.now(), nil, nil, false
	if old != nil {
		old.retiring = true
		if old.inflight == 0 {
			s.killLater(old)
		}
	}
	return oldDesc, oldBin
}

// killLater kills p in the background: Kill waits up to 2s for a graceful
// exit, which a stuck plugin won't give. Callers hold s.mu.
func (s *supervisor) killLater(p *proc) {
	if _, ok := s.live[p]; !ok {
		return // already killed, or by stop
	}
	delete(s.live, p)
	s.m.bg.Add(1)
	go func() {
		defer s.m.bg.Done()
		p.client.Kill()
	}()
}

// stop kills every process, including ones still serving calls after a
// reload; the supervisor then refuses calls.
func (s *supervisor) stop() {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.live))
	for p := range s.live {
		procs = append(procs, p)
	}
	s.cur, s.live = nil, map[*proc]struct{}{}
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.client.Kill()
		}()
	}
	wg.Wait()
}

// name is the plugin's declared name, or its file name before it said.
func (s *supervisor) name() string {
	if s.pname != "" {
		return s.pname
	}
	return filepath.Base(s.path)
}

// describe returns what the plugin last declared.
func (s *supervisor) describe() *pluginpb.DescribeResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desc
}

// pid is the current process id, 0 if none; for tests and logs.
func (s *supervisor) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.pid
}
