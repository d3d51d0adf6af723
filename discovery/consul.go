package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults of ConsulConfig and Registration.
const (
	DefaultConsulAddress   = "127.0.0.1:8500"
	DefaultWaitTime        = 30 * time.Second
	DefaultCheckTTL        = 3 * time.Second
	DefaultDeregisterAfter = time.Minute // Consul does not reap sooner
)

// ErrNotRegistered is returned by SetHealth before Register or after
// Deregister.
var ErrNotRegistered = errors.New("discovery: worker is not registered")

// UnreachableError means the Consul agent did not answer at all: nothing
// listens at its address, the name does not resolve, or it did not answer
// in time. An agent that answered with an error is not unreachable.
type UnreachableError struct {
	Addr string // the agent's address as configured
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Consul agent at %s (%s)", e.Addr, rootCause(e.Err))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Unreachable wraps err in an *UnreachableError when it is a failure to
// talk to the agent at addr rather than an answer from it.
func Unreachable(addr string, err error) error {
	var se api.StatusError
	var ue *UnreachableError
	if err == nil || errors.As(err, &se) || errors.As(err, &ue) || errors.Is(err, context.Canceled) {
		return err
	}
	return &UnreachableError{Addr: addr, Err: err}
}

// rootCause is the innermost reason of a network error ("connection
// refused", "no such host", "i/o timeout"), without the URL and call
// chain around it.
func rootCause(err error) string {
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Err + ": " + dns.Name
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return err.Error()
}

// ConsulConfig says which agent to talk to and which service to use.
// Consul's own CONSUL_HTTP_* environment (TLS files, namespace) applies as
// it does for the consul CLI; Address and Token set here win.
type ConsulConfig struct {
	Address  string        // host:port of the agent's HTTP API, or http(s)://host:port; default 127.0.0.1:8500
	Token    string        // ACL token; empty: CONSUL_HTTP_TOKEN if set, else the agent's default token
	Service  string        // service name; default DefaultService
	Logger   *slog.Logger  // default slog.Default()
	WaitTime time.Duration // how long one blocking query of Watch may wait; default 30s
}

// Registration is what a worker tells the agent about itself.
type Registration struct {
	ID      string // unique per worker; the service ID and the member ID
	Address string // host peers dial; empty lets Consul use the node's address
	Port    int    // port of the worker gRPC API
	Meta    map[string]string
	Tags    []string

	CheckTTL        time.Duration // the check turns critical if SetHealth is not called within it; default 3s
	DeregisterAfter time.Duration // critical this long → the agent removes the service; default 1m
}

// CheckID is the ID of the TTL check registered for the worker with the
// given ID.
func CheckID(workerID string) string { return "corral-loop:" + workerID }

// checkName is what the Consul UI shows as the check's name.
const checkName = "corral worker loop"

// Consul registers a worker with its local Consul agent and watches the
// healthy workers. Safe for concurrent use.
type Consul struct {
	addr     string
	client   *api.Client
	service  string
	token    string
	waitTime time.Duration
	log      *slog.Logger

	// regMu serialises Register, Deregister and the re-registration of
	// SetHealth, so a SetHealth racing a Deregister cannot bring the
	// service back.
	regMu sync.Mutex
	reg   *Registration // with defaults applied; nil when not registered
}

// NewConsul makes a client. It does not contact the agent.
func NewConsul(cfg ConsulConfig) (*Consul, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultConsulAddress
	}
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = DefaultWaitTime
	}
	if cfg.WaitTime < 0 {
		return nil, fmt.Errorf("discovery: wait time must be positive, got %v", cfg.WaitTime)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	acfg := api.DefaultConfig()
	acfg.Address = cfg.Address
	if cfg.Token != "" {
		acfg.Token = cfg.Token
	}
	client, err := api.NewClient(acfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: Consul client for %s: %w", cfg.Address, err)
	}
	return &Consul{
		addr:     cfg.Address,
		client:   client,
		service:  cfg.Service,
		token:    cfg.Token,
		waitTime: cfg.WaitTime,
		log:      cfg.Logger.With("component", "discovery", "service", cfg.Service),
	}, nil
}

// Register adds the worker to the local agent as an instance of the
// service, with one TTL check that starts critical: the worker is not a
// member until its first SetHealth(StatusPassing). Registering again
// replaces the previous registration (and removes it from the agent if
// the ID changed).
func (c *Consul) Register(ctx context.Context, reg Registration) error {
	if reg.ID == "" {
		return errors.New("discovery: register: the worker ID is empty")
	}
	if reg.Port <= 0 || reg.Port > 65535 {
		return fmt.Errorf("discovery: register %s: port %d is not a TCP port", reg.ID, reg.Port)
	}
	if reg.CheckTTL < 0 || reg.DeregisterAfter < 0 {
		return fmt.Errorf("discovery: register %s: check TTL (%v) and deregister-after (%v) must not be negative",
			reg.ID, reg.CheckTTL, reg.DeregisterAfter)
	}
	if reg.CheckTTL == 0 {
		reg.CheckTTL = DefaultCheckTTL
	}
	if reg.DeregisterAfter == 0 {
		reg.DeregisterAfter = DefaultDeregisterAfter
	}
	reg.Meta = maps.Clone(reg.Meta)
	reg.Tags = slices.Clone(reg.Tags)

	c.regMu.Lock()
	defer c.regMu.Unlock()
	if err := c.register(ctx, &reg); err != nil {
		return err
	}
	if old := c.reg; old != nil && old.ID != reg.ID {
		// One Consul value is one worker: the old identity must not linger.
		q := (&api.QueryOptions{}).WithContext(ctx)
		if err := c.client.Agent().ServiceDeregisterOpts(old.ID, q); err != nil {
			c.log.Warn("cannot deregister the previous identity", "id", old.ID, "err", err)
		}
	}
	c.reg = &reg
	return nil
}

// register sends reg to the agent; the caller holds regMu.
func (c *Consul) register(ctx context.Context, reg *Registration) error {
	svc := &api.AgentServiceRegistration{
		ID:      reg.ID,
		Name:    c.service,
		Address: reg.Address,
		Port:    reg.Port,
		Meta:    reg.Meta,
		Tags:    reg.Tags,
		Check: &api.AgentServiceCheck{
			CheckID:                        CheckID(reg.ID),
			Name:                           checkName,
			Notes:                          "Passes while the worker's job loop turns and its Redis lease is held; the output tells what it owns.",
			TTL:                            reg.CheckTTL.String(),
			Status:                         api.HealthCritical,
			DeregisterCriticalServiceAfter: reg.DeregisterAfter.String(),
		},
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true, Token: c.token}.WithContext(ctx)
	if err := c.client.Agent().ServiceRegisterOpts(svc, opts); err != nil {
		return fmt.Errorf("discovery: register %s with the Consul agent: %w", reg.ID, Unreachable(c.addr, err))
	}
	return nil
}

// SetHealth reports the worker's state and resets the check's TTL; output
// is shown in the Consul UI. If the agent no longer knows the check (it
// restarted without its state, as dev agents do), SetHealth registers the
// worker again and retries once.
func (c *Consul) SetHealth(ctx context.Context, s Status, output string) error {
	if !s.valid() {
		return fmt.Errorf("discovery: set health: unknown status %q", s)
	}
	c.regMu.Lock()
	reg := c.reg
	c.regMu.Unlock()
	if reg == nil {
		return ErrNotRegistered
	}
	err := c.updateTTL(ctx, reg.ID, s, output)
	if err == nil || !unknownCheck(err) {
		return err
	}

	c.regMu.Lock()
	defer c.regMu.Unlock()
	if c.reg == nil {
		return ErrNotRegistered // deregistered meanwhile: stay out
	}
	// A concurrent SetHealth may have registered again already.
	if err = c.updateTTL(ctx, c.reg.ID, s, output); err == nil || !unknownCheck(err) {
		return err
	}
	c.log.Warn("the Consul agent no longer knows our check (agent restarted?); registering again",
		"id", c.reg.ID, "check", CheckID(c.reg.ID))
	if err := c.register(ctx, c.reg); err != nil {
		return err
	}
	return c.updateTTL(ctx, c.reg.ID, s, output)
}

func (c *Consul) updateTTL(ctx context.Context, id string, s Status, output string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := c.client.Agent().UpdateTTLOpts(CheckID(id), output, string(s), q); err != nil {
		return fmt.Errorf("discovery: set health of %s to %s: %w", id, s, err)
	}
	return nil
}

// unknownCheck tells whether the agent refused a TTL update because it has
// no such TTL check.
func unknownCheck(err error) bool {
	var se api.StatusError
	if !errors.As(err, &se) {
		return false
	}
	return se.Code == http.StatusNotFound || strings.Contains(se.Body, "does not have associated TTL")
}

// Deregister removes the worker from the agent, so peers drop it at once
// instead of a TTL later. Safe to call twice or before Register.
func (c *Consul) Deregister(ctx context.Context) error {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	if c.reg == nil {
		return nil
	}
	id := c.reg.ID
	c.reg = nil
	q := (&api.QueryOptions{}).WithContext(ctx)
	err := c.client.Agent().ServiceDeregisterOpts(id, q)
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil // the agent forgot us already
	}
	if err != nil {
		return fmt.Errorf("discovery: deregister %s from the Consul agent: %w", id, err)
	}
	return nil
}

// Healthy lists the passing instances of the service, sorted by ID.
func (c *Consul) Healthy(ctx context.Context) ([]Member, error) {
	ms, _, err := c.query(ctx, 0)
	return ms, err
}

// query runs one health query, blocking while the index is waitIndex (0:
// answer at once).
func (c *Consul) query(ctx context.Context, waitIndex uint64) ([]Member, uint64, error) {
	q := &api.QueryOptions{WaitIndex: waitIndex}
	if waitIndex > 0 {
		q.WaitTime = c.waitTime
	}
	entries, meta, err := c.client.Health().Service(c.service, "", true, q.WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("discovery: list passing %s instances in Consul: %w", c.service, Unreachable(c.addr, err))
	}
	return membersFromEntries(entries), meta.LastIndex, nil
}
