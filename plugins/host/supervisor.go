package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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

	inflight int  // calls running on it; guarded by the supervisor's mu
	retiring bool // kill once inflight reaches 0
}

// supervisor owns one plugin binary: its current process, relaunching it
// when it dies, retiring it when a call shows it is stuck, and replacing it
// on reload.
type supervisor struct {
	path  string // absolute
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

	done chan struct{} // closed by stop: ends watch
}

func newSupervisor(m *Manager, path string) *supervisor {
	return &supervisor{path: path, m: m, log: newPluginLog(m.log, filepath.Base(path)),
		live: map[*proc]struct{}{}, done: make(chan struct{})}
}

// start launches the plugin for the first time and starts watching it.
func (s *supervisor) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastLaunch = s.m.now()
	s.crashes = 1
	p, err := s.launch(ctx)
	if err != nil {
		return err
	}
	s.live[p] = struct{}{}
	s.cur, s.desc = p, p.desc
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

// launch verifies, starts and describes one process of the plugin.
func (s *supervisor) launch(ctx context.Context) (*proc, error) {
	fail := func(err error) (*proc, error) {
		return nil, fmt.Errorf("launch plugin %s: %w", s.path, err)
	}
	var secure *plugin.SecureConfig
	sum, err := s.m.pinnedChecksum(s.path)
	if err != nil {
		return fail(err)
	}
	if sum != nil {
		if err := verifyChecksum(s.path, sum); err != nil {
			return fail(err)
		}
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	cmd := exec.Command(s.path)
	cmd.Env = append(cmd.Env, plugins.MaxMessageEnv+"="+strconv.Itoa(s.m.cfg.MaxMessageBytes))
	dieWithParent(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake,
		Plugins:          plugins.HostPluginSet(s.m.cfg.Host),
		Cmd:              cmd,
		SecureConfig:     secure,
		AutoMTLS:         isGoBinary(s.path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  plugins.DialOptions(s.m.cfg.MaxMessageBytes),
		StartTimeout:     s.m.cfg.StartTimeout,
		Logger:           s.log.hclog(),
		SyncStdout:       s.log.stdio("stdout"),
		SyncStderr:       s.log.stdio("stderr"),
	})
	killed := func(err error) (*proc, error) {
		client.Kill()
		return fail(err)
	}
	conn, err := client.Client()
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		// Changed between our check and exec.
		return killed(fmt.Errorf("%w: %s changed while it was being launched", ErrChecksumMismatch, s.path))
	}
	if err != nil {
		return killed(err)
	}
	raw, err := conn.Dispense(plugins.PluginName)
	if err != nil {
		return killed(err)
	}
	pc, ok := raw.(*plugins.Conn)
	if !ok {
		return killed(fmt.Errorf("dispensed %T, want a Handler client", raw))
	}
	rpc := pc.HandlerClient
	dctx, cancel := context.WithTimeout(ctx, s.m.cfg.StartTimeout)
	defer cancel()
	desc, err := rpc.Describe(dctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return killed(fmt.Errorf("describe: %w", err))
	}
	if err := checkDescribe(desc); err != nil {
		return killed(err)
	}
	p := &proc{client: client, rpc: rpc, hostID: pc.HostServiceID, desc: desc, launched: s.m.now()}
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
		s.log.slog().Warn("plugin process exited; restarting it", "pid", s.cur.pid)
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
	p, err := s.launch(context.Background())
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

// replace makes next the current process; the old one finishes its
// in-flight calls and is then killed.
func (s *supervisor) replace(next *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		next.client.Kill()
		return
	}
	s.live[next] = struct{}{}
	old := s.cur
	s.cur, s.desc = next, next.desc
	// A deliberate upgrade is a fresh start: forget the crashes of the
	// version it replaces.
	s.crashes, s.lastLaunch, s.lastErr, s.restarts, s.tripped = 1, s.m.now(), nil, nil, false
	if old != nil {
		old.retiring = true
		if old.inflight == 0 {
			s.killLater(old)
		}
	}
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
