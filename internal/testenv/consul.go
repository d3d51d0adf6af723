package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulAgentConfig describes a `consul agent -dev` to start.
type ConsulAgentConfig struct {
	Binary string // default: ConsulBinary()
	Dir    string // working directory: consul.log and, with PersistState, data/ (required)

	// Ports; any left 0 are chosen free (and all retried on others if one
	// is lost to a race). DNS, gRPC and gRPC-TLS are always off.
	HTTPPort, ServerPort, SerfLANPort, SerfWANPort int

	NodeName string // default "corral-<http port>"

	// PersistState keeps services and checks in Dir/data across Restart,
	// like an agent with a data_dir. Without it a restarted agent has
	// forgotten everything, like any -dev agent.
	PersistState bool

	HCL []string // extra configuration, each passed as -hcl (ACLs, for example)
}

// ConsulAgent is a single-node Consul dev agent (server and client) bound to
// 127.0.0.1. Stop, Kill and Restart are safe to call in any order. On Linux
// the agent is killed when the process that started it dies.
type ConsulAgent struct {
	Addr    string // host:port of the HTTP API
	Dir     string
	LogFile string

	cfg  ConsulAgentConfig
	mu   sync.Mutex
	proc *process
}

// StartConsulAgent starts the agent and waits until it has elected itself
// leader and its node is in the catalog.
func StartConsulAgent(ctx context.Context, cfg ConsulAgentConfig) (*ConsulAgent, error) {
	if cfg.Dir == "" {
		return nil, errors.New("testenv: ConsulAgentConfig.Dir is required")
	}
	if cfg.Binary == "" {
		bin, err := ConsulBinary()
		if err != nil {
			return nil, err
		}
		cfg.Binary = bin
	}
	given := cfg
	a := &ConsulAgent{Dir: cfg.Dir, LogFile: filepath.Join(cfg.Dir, "consul.log")}
	for attempt := 1; ; attempt++ {
		a.cfg = given
		free := 0
		for _, p := range []int{given.HTTPPort, given.ServerPort, given.SerfLANPort, given.SerfWANPort} {
			if p == 0 {
				free++
			}
		}
		if free > 0 {
			ports, err := freePorts(free, true)
			if err != nil {
				return nil, fmt.Errorf("testenv: consul: %w", err)
			}
			for _, p := range []*int{&a.cfg.HTTPPort, &a.cfg.ServerPort, &a.cfg.SerfLANPort, &a.cfg.SerfWANPort} {
				if *p == 0 {
					*p, ports = ports[0], ports[1:]
				}
			}
		}
		if given.NodeName == "" {
			a.cfg.NodeName = "corral-" + strconv.Itoa(a.cfg.HTTPPort)
		}
		a.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.HTTPPort))
		err := a.start(ctx)
		var exited *errExited
		if err == nil || free == 0 || attempt == 3 || !errors.As(err, &exited) {
			return a, err
		}
	}
}

func (a *ConsulAgent) args() []string {
	c := a.cfg
	args := []string{"agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", c.NodeName,
		"-http-port", strconv.Itoa(c.HTTPPort), "-server-port", strconv.Itoa(c.ServerPort),
		"-serf-lan-port", strconv.Itoa(c.SerfLANPort), "-serf-wan-port", strconv.Itoa(c.SerfWANPort),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-https-port", "-1",
		// Connect's CA costs start-up time and nothing in Corral uses it.
		"-hcl", "connect { enabled = false }",
		"-log-level", "info",
	}
	if c.PersistState {
		args = append(args, "-data-dir", filepath.Join(a.Dir, "data"))
	}
	for _, h := range c.HCL {
		args = append(args, "-hcl", h)
	}
	return args
}

// start runs the agent and waits until it is ready; the caller knows it is
// down.
func (a *ConsulAgent) start(ctx context.Context) error {
	// No keep-alives: the probe's connections must not outlive it.
	client, err := api.NewClient(&api.Config{Address: a.Addr, Scheme: "http",
		Transport: &http.Transport{DisableKeepAlives: true}})
	if err != nil {
		return fmt.Errorf("testenv: consul client: %w", err)
	}
	p, err := startProcess(a.cfg.Binary, a.args(), a.Dir, a.LogFile)
	if err != nil {
		return fmt.Errorf("testenv: consul: %w", err)
	}
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()
	for {
		if consulReady(ctx, client, a.cfg.NodeName) {
			return nil
		}
		select {
		case <-p.done:
			return &errExited{name: "consul agent on " + a.Addr, err: p.err, log: logTail(a.LogFile, 20)}
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("testenv: consul agent on %s not ready (leader and catalog): %w; last lines of %s:\n%s",
				a.Addr, ctx.Err(), a.LogFile, logTail(a.LogFile, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// consulReady: a leader is elected and the agent's node is in the catalog,
// so services registered from now on reach the catalog.
func consulReady(ctx context.Context, c *api.Client, node string) bool {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(qctx)
	leader, err := c.Status().LeaderWithQueryOptions(q)
	if err != nil || leader == "" {
		return false
	}
	n, _, err := c.Catalog().Node(node, q)
	return err == nil && n != nil && n.Node != nil
}

// Stop shuts the agent down with SIGTERM.
func (a *ConsulAgent) Stop() error {
	a.mu.Lock()
	p := a.proc
	a.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(stopGrace)
}

// Kill sends SIGKILL to the agent.
func (a *ConsulAgent) Kill() {
	a.mu.Lock()
	p := a.proc
	a.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Restart stops the agent if it runs and starts it again on the same
// ports. Unless PersistState is set, the new agent knows no services.
func (a *ConsulAgent) Restart(ctx context.Context) error {
	if err := a.Stop(); err != nil {
		return err
	}
	return a.start(ctx)
}

// Consul is a Consul dev agent for one test.
type Consul struct {
	Addr  string // host:port of the HTTP API
	Dir   string
	Agent *ConsulAgent
}

// ConsulOptions adjusts StartConsul; the zero value is fine.
type ConsulOptions struct {
	PersistState bool     // keep services and checks across Restart
	HCL          []string // extra agent configuration, each passed as -hcl
}

// StartConsul starts `consul agent -dev` on free ports in a directory of
// t.TempDir() and stops it when the test ends. Its log is Dir/consul.log,
// copied to the test log if the test fails.
func StartConsul(t testing.TB, opts ...ConsulOptions) *Consul {
	t.Helper()
	var o ConsulOptions
	if len(opts) > 1 {
		t.Fatalf("testenv: StartConsul takes at most one ConsulOptions")
	} else if len(opts) == 1 {
		o = opts[0]
	}
	bin, err := ConsulBinary()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	agent, err := StartConsulAgent(ctx, ConsulAgentConfig{Binary: bin, Dir: t.TempDir(), PersistState: o.PersistState, HCL: o.HCL})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := agent.Stop(); err != nil {
			t.Errorf("testenv: stop consul: %v", err)
		}
		if t.Failed() {
			t.Logf("consul agent %s, last lines of %s:\n%s", agent.Addr, agent.LogFile, logTail(agent.LogFile, 40))
		}
	})
	return &Consul{Addr: agent.Addr, Dir: agent.Dir, Agent: agent}
}

// Client returns an API client of the agent.
func (c *Consul) Client(t testing.TB) *api.Client {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: c.Addr, Scheme: "http"})
	if err != nil {
		t.Fatalf("testenv: consul client: %v", err)
	}
	return client
}

// Stop shuts the agent down (SIGTERM); Restart brings it back.
func (c *Consul) Stop(t testing.TB) {
	t.Helper()
	if err := c.Agent.Stop(); err != nil {
		t.Fatalf("testenv: stop consul: %v", err)
	}
}

// Kill sends SIGKILL to the agent; Restart brings it back.
func (c *Consul) Kill(t testing.TB) {
	t.Helper()
	c.Agent.Kill()
}

// Restart starts the agent again on the same ports and waits for a leader.
// Unless started with PersistState, it has forgotten every service.
func (c *Consul) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Agent.Restart(ctx); err != nil {
		t.Fatalf("testenv: restart consul: %v", err)
	}
}
