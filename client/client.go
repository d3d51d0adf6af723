package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
)

// ErrNoWorkers means Consul lists no healthy worker.
var ErrNoWorkers = errors.New("no healthy corral worker found in Consul")

// Config says where the cluster is.
type Config struct {
	ConsulAddr  string // host:port of a Consul agent's HTTP API
	ConsulToken string
	Service     string // Consul service name of the workers
	Breaker     breaker.Config
	Logger      *slog.Logger
}

// Client submits jobs to and queries a cluster.
type Client struct {
	members interface {
		Healthy(ctx context.Context) ([]discovery.Member, error)
	}
	pool *Pool
	next atomic.Uint64
}

// New connects to Consul (lazily) and prepares per-worker breakers.
func New(cfg Config) (*Client, error) {
	if cfg.Service == "" {
		cfg.Service = discovery.DefaultService
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bcfg := cfg.Breaker
	if bcfg.Timeout == 0 {
		bcfg = breaker.DefaultConfig()
	}
	bcfg.Logger = cfg.Logger
	bcfg.IsSuccessful = func(err error) bool { return !PeerFault(err) }
	set, err := breaker.NewSet(bcfg)
	if err != nil {
		return nil, err
	}
	c, err := discovery.NewConsul(discovery.ConsulConfig{Address: cfg.ConsulAddr, Token: cfg.ConsulToken, Service: cfg.Service, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &Client{members: c, pool: NewPool(set)}, nil
}

// Close releases connections.
func (c *Client) Close() { c.pool.Close() }

// Members lists healthy workers.
func (c *Client) Members(ctx context.Context) ([]discovery.Member, error) {
	ms, err := c.members.Healthy(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: list workers in Consul: %w", err)
	}
	if len(ms) == 0 {
		return nil, ErrNoWorkers
	}
	return ms, nil
}

// any calls fn on one healthy worker, moving on to the next when a worker
// is down or its breaker is open. Request errors are returned at once.
func (c *Client) any(ctx context.Context, fn func(ctx context.Context, w workerpb.WorkerClient) error) error {
	ms, err := c.Members(ctx)
	if err != nil {
		return err
	}
	_, err = c.onEach(ctx, ms, int(c.next.Add(1)), fn)
	return err
}

// onEach calls fn on the workers of ms in turn from start, moving on while
// a worker is down or its breaker open. done is false when every one of
// them failed so; err is then the last failure.
func (c *Client) onEach(ctx context.Context, ms []discovery.Member, start int, fn func(ctx context.Context, w workerpb.WorkerClient) error) (done bool, err error) {
	var last error
	for i := range ms {
		m := ms[(start+i)%len(ms)]
		err := c.pool.Call(ctx, m.Address, fn)
		if err == nil || !PeerFault(err) && !errors.Is(err, breaker.ErrOpen) {
			return true, err
		}
		last = fmt.Errorf("worker %s (%s): %w", m.ID, m.Address, err)
		if ctx.Err() != nil {
			return true, last
		}
	}
	return false, last
}

// Submit sends jobs to a worker; each result says whether its job was
// enqueued, a duplicate, or rejected (with the reason).
func (c *Client) Submit(ctx context.Context, jobs []*workerpb.Job) ([]*workerpb.SubmitResult, error) {
	var out []*workerpb.SubmitResult
	err := c.any(ctx, submitCall(jobs, &out))
	return out, err
}

// submitCall is a Submit of jobs to one worker, its results kept in out.
func submitCall(jobs []*workerpb.Job, out *[]*workerpb.SubmitResult) func(ctx context.Context, w workerpb.WorkerClient) error {
	return func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.Submit(ctx, &workerpb.SubmitRequest{Jobs: jobs})
		if err != nil {
			return err
		}
		*out = resp.Results
		return nil
	}
}

// State reads committed entity states.
func (c *Client) State(ctx context.Context, entity string, keys ...string) ([]*workerpb.EntityState, error) {
	var out []*workerpb.EntityState
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.GetState(ctx, &workerpb.GetStateRequest{Entity: entity, Keys: keys})
		if err != nil {
			return err
		}
		out = resp.States
		return nil
	})
	return out, err
}

// Status asks one worker for the status of the whole cluster.
func (c *Client) Status(ctx context.Context) (*workerpb.StatusResponse, error) {
	var out *workerpb.StatusResponse
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.Status(ctx, &workerpb.StatusRequest{Cluster: true})
		out = resp
		return err
	})
	return out, err
}
