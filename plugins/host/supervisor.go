package host

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
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

// supervisor owns one plugin binary: its current process, relaunching it
// when it dies, and retiring it when a call shows it is stuck.
type supervisor struct {
	path  string // absolute
	m     *Manager
	log   *pluginLog
	pname string // the declared name; set by start, never changes after

	mu         sync.Mutex
	client     *plugin.Client // nil when no process is running
	rpc        pluginpb.HandlerClient
	desc       *pluginpb.DescribeResponse // of the current (or last) process
	stopped    bool
	crashes    int // launches in a row that did not stay up for stableAfter
	lastLaunch time.Time
	lastErr    error
}

func newSupervisor(m *Manager, path string) *supervisor {
	return &supervisor{path: path, m: m, log: newPluginLog(m.log, filepath.Base(path))}
}

// start launches the plugin for the first time.
func (s *supervisor) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastLaunch = s.m.now()
	s.crashes = 1
	c, rpc, desc, err := s.launch(ctx)
	if err != nil {
		return err
	}
	s.client, s.rpc, s.desc = c, rpc, desc
	s.pname = desc.GetName()
	s.log.setName(s.m.log, s.pname)
	return nil
}

// launch starts a process and asks it what it serves.
func (s *supervisor) launch(ctx context.Context) (*plugin.Client, pluginpb.HandlerClient, *pluginpb.DescribeResponse, error) {
	cmd := exec.Command(s.path)
	dieWithParent(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake,
		Plugins:          plugins.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  plugins.DialOptions(),
		StartTimeout:     s.m.cfg.StartTimeout,
		Logger:           s.log.hclog(),
		SyncStdout:       s.log.stdio("stdout"),
		SyncStderr:       s.log.stdio("stderr"),
	})
	fail := func(err error) (*plugin.Client, pluginpb.HandlerClient, *pluginpb.DescribeResponse, error) {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("launch plugin %s: %w", s.path, err)
	}
	conn, err := client.Client()
	if err != nil {
		return fail(err)
	}
	raw, err := conn.Dispense(plugins.PluginName)
	if err != nil {
		return fail(err)
	}
	rpc, ok := raw.(pluginpb.HandlerClient)
	if !ok {
		return fail(fmt.Errorf("dispensed %T, want a Handler client", raw))
	}
	dctx, cancel := context.WithTimeout(ctx, s.m.cfg.StartTimeout)
	defer cancel()
	desc, err := rpc.Describe(dctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	if err := checkDescribe(desc); err != nil {
		return fail(err)
	}
	return client, rpc, desc, nil
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
		case h.GetTimeoutMs() < 0 || h.GetMaxAttempts() < 0:
			return fmt.Errorf("describe: plugin %s handler %q has a negative timeout or max attempts", d.GetName(), h.GetName())
		}
		seen[h.GetName()] = true
	}
	return nil
}

// conn returns a client of a running process, relaunching the plugin first
// if its process exited or was retired.
func (s *supervisor) conn() (*plugin.Client, pluginpb.HandlerClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, nil, ErrStopped
	}
	if s.client != nil && !s.client.Exited() {
		return s.client, s.rpc, nil
	}
	if s.client != nil {
		s.log.slog().Warn("plugin process exited; restarting it")
		s.client.Kill() // reaps it and closes its connection; quick once exited
		s.client, s.rpc = nil, nil
	}

	now := s.m.now()
	if now.Sub(s.lastLaunch) >= stableAfter {
		s.crashes = 0
	}
	if next := s.lastLaunch.Add(restartDelay(s.crashes)); now.Before(next) {
		return nil, nil, fmt.Errorf("%w: plugin %s died %d times in a row, next restart in %v (last error: %v)",
			ErrPluginUnavailable, s.name(), s.crashes, next.Sub(now).Round(time.Millisecond), s.lastErr)
	}
	s.lastLaunch = now
	s.crashes++
	// Not the caller's context: a relaunch that outlives one caller's
	// deadline still serves the next caller.
	c, rpc, desc, err := s.launch(context.Background())
	if err == nil {
		err = sameHandlers(s.desc, desc)
		if err != nil {
			c.Kill()
		}
	}
	if err != nil {
		s.lastErr = err
		s.log.slog().Error("plugin restart failed", "err", err, "crashes", s.crashes)
		return nil, nil, fmt.Errorf("%w: %w", ErrPluginUnavailable, err)
	}
	s.client, s.rpc, s.desc = c, rpc, desc
	s.log.slog().Info("plugin restarted", "version", desc.GetVersion(), "crashes", s.crashes)
	return c, rpc, nil
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

// retire stops using client: the next call launches a new process. Only
// the first caller to see a given process fail retires it.
func (s *supervisor) retire(client *plugin.Client, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != client {
		return
	}
	s.log.slog().Warn("retiring plugin process", "reason", reason)
	s.client, s.rpc = nil, nil
	// Kill waits up to 2s for a graceful exit; a stuck plugin won't give one.
	s.m.bg.Add(1)
	go func() {
		defer s.m.bg.Done()
		client.Kill()
	}()
}

// stop kills the current process; the supervisor then refuses calls.
func (s *supervisor) stop() {
	s.mu.Lock()
	c := s.client
	s.client, s.rpc, s.stopped = nil, nil, true
	s.mu.Unlock()
	if c != nil {
		c.Kill()
	}
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
	if s.client == nil {
		return 0
	}
	if rc := s.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}
