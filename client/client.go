package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/pki"
	"google.golang.org/grpc/credentials"
)

// ErrNoWorkers means Consul lists no healthy worker.
var ErrNoWorkers = errors.New("no healthy corral worker found in Consul")

// ErrTLS means the TLS handshake with every worker tried failed: this
// client's certificate was refused (missing, expired, signed by another
// CA) or it refused the workers'. The wrapped error says which; calls are
// not retried.
var ErrTLS = errors.New("TLS handshake with the worker failed")

// Config says where the cluster is.
type Config struct {
	ConsulAddr  string // host:port of a Consul agent's HTTP API
	ConsulToken string
	Service     string // Consul service name of the workers
	Breaker     breaker.Config
	// Retry says how Submit and Call try again while no worker can take a
	// call; the zero value takes DefaultRetry().
	Retry  RetryConfig
	Logger *slog.Logger
	// OnQueueFull, when set, hears of each refusal by a full queue before
	// the client backs off and sends the jobs again (to show the wait).
	OnQueueFull func(QueueFull)
	// TLS, when set, is the client side of mutual TLS: the certificate
	// (its role decides what the workers allow) and the CA the workers'
	// certificates must chain to (LoadTLS builds one from files). Nil
	// dials in plaintext, which workers serving TLS refuse.
	TLS *tls.Config
}

// LoadTLS builds Config.TLS from PEM files: the client certificate, its
// key, and the cluster's CA. It checks the certificate is valid now under
// that CA and names a role.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	id, err := pki.LoadIdentity(certFile, keyFile, caFile)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return id.ClientConfig(), nil
}

// Client submits jobs to and queries a cluster.
type Client struct {
	members interface {
		Healthy(ctx context.Context) ([]discovery.Member, error)
	}
	pool  *peer.Pool
	retry RetryConfig
	// onFull is Config.OnQueueFull.
	onFull func(QueueFull)
	log    *slog.Logger
	next   atomic.Uint64
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
	if cfg.Retry == (RetryConfig{}) {
		cfg.Retry = DefaultRetry()
	}
	if err := cfg.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	var opts []peer.Option
	if cfg.TLS != nil {
		t := cfg.TLS.Clone()
		t.MinVersion = max(t.MinVersion, pki.MinVersion)
		opts = append(opts, peer.WithCredentials(credentials.NewTLS(t)))
	}
	pool, err := peer.NewPool(bcfg, cfg.Logger, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c, err := discovery.NewConsul(discovery.ConsulConfig{Address: cfg.ConsulAddr, Token: cfg.ConsulToken, Service: cfg.Service, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &Client{members: c, pool: pool, retry: cfg.Retry, log: cfg.Logger, onFull: cfg.OnQueueFull}, nil
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
	var last, refused error
	for i := range ms {
		m := ms[(start+i)%len(ms)]
		err := c.pool.Call(ctx, m.Address, fn)
		if err == nil || !peer.Fault(err) && !errors.Is(err, breaker.ErrOpen) {
			return true, err
		}
		last = fmt.Errorf("worker %s (%s): %w", m.ID, m.Address, err)
		if peer.HandshakeFailed(err) {
			refused = fmt.Errorf("worker %s (%s): %w: %w", m.ID, m.Address, ErrTLS, err)
		}
		if ctx.Err() != nil {
			return true, last
		}
		c.log.Debug("client: worker unavailable, trying the next", "worker", m.ID, "address", m.Address, "err", err)
	}
	if refused != nil {
		return true, refused // certificates do not mend on their own: no retry
	}
	return false, last
}

// Submit sends jobs to a worker; each result says whether its job was
// enqueued, a duplicate, or rejected (bad input, with the reason). Jobs
// without an id get one here, before the first try. While no worker can
// take the call (down, slow, or its Redis unavailable) it is sent again,
// to the next worker and after a backoff, with the same ids (see
// RetryConfig); when it had to be sent again, a job found already enqueued
// is reported as enqueued, not as a duplicate, as the earlier try may have
// enqueued it. An OpenTelemetry span in ctx goes with the jobs as their
// traceparent (Job.Traceparent, unless set), so a worker that traces puts
// their spans in the caller's trace.
func (c *Client) Submit(ctx context.Context, jobs []*workerpb.Job) ([]*workerpb.SubmitResult, error) {
	return c.submit(ctx, jobs, c.any)
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
