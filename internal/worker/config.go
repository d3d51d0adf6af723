package worker

import (
	"errors"
	"fmt"
	"github.com/corralhq/corral/internal/routing"
	"net"
	"time"

	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/sharding"
)

// Config is everything a worker runs with.
type Config struct {
	// Routing is the live partition layout, shared by every part of the
	// worker; New makes it from Ring.Partitions when nil. Start reads the
	// cluster's own layout into it, and a reshard changes it.
	Routing   *routing.Table
	ID        string // unique, stable name of this worker in Consul and on the ring
	Advertise string // host:port others dial for the gRPC API
	// Groups are the named groups this worker joins, published in its
	// Consul service meta and tags: a broadcast to a group runs on its
	// members.
	Groups []string

	// Listener is where Start serves the gRPC API until Stop; nil serves
	// nothing (the caller may serve API() itself).
	Listener net.Listener
	// MetricsAddr is where Start serves Prometheus /metrics (host:port,
	// port 0 for a free one), published in Consul meta "metrics"; "" serves
	// none.
	MetricsAddr string

	// Tracer traces jobs (see internal/tracing); nil, the default, is
	// tracing off: no span is started and no traceparent stored.
	Tracer *tracing.Tracer
	// Pprof also serves Go's profiler at /debug/pprof/ on MetricsAddr.
	Pprof bool
	// MetricsTLS serves MetricsAddr (metrics, dashboard, profiles) with
	// mutual TLS, like the API: any certificate of the cluster's CA may
	// read, and the dashboard's dead-letter actions need an admin one.
	// Needs TLS.
	MetricsTLS bool
	// TLS is this worker's certificate and the cluster's CA: the gRPC API
	// then requires client certificates and checks each call against the
	// caller's role, and calls to peers present the certificate. Nil serves
	// and dials in plaintext.
	TLS *pki.Identity

	Ring    sharding.Config
	Lease   lease.Config
	Store   store.Config
	Breaker breaker.Config

	BatchSize   int64         // jobs read per partition per round
	ReadBlock   time.Duration // how long one read waits for new jobs
	Parallel    int           // partition batches processed at once
	MaxAttempts int           // default when a handler declares none
	// MaxAttemptsLimit caps what a submitter may ask for one job.
	MaxAttemptsLimit int
	// RetryBackoff is the wait before a job's second attempt; it doubles
	// per attempt up to RetryBackoffMax, half of it jittered.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	MaxPayloadBytes int
	// UnknownHandlerWait is how long a job waits, parked and without
	// spending attempts, when the owner of its partition does not serve
	// its handler (during a rolling upgrade that adds it), before it is
	// dead-lettered.
	UnknownHandlerWait time.Duration
	CheckTTL           time.Duration // TTL of the Consul check
	// StallTimeout: a job loop stuck this long stops renewing the lease,
	// so the partitions move instead of waiting for a release that will
	// not come. Longer than any plugin call's deadline.
	StallTimeout time.Duration
	ClaimEvery   time.Duration // how often ownership is reconciled without a membership change
	// FailoverOnRefused takes a peer's partitions over as soon as its gRPC
	// port, which accepted this worker's connection, refuses connections
	// (the process is gone), instead of waiting for its lease to expire.
	FailoverOnRefused bool
}

// DefaultConfig returns settings that suit a small cluster.
func DefaultConfig() Config {
	return Config{
		Ring:               sharding.DefaultConfig(),
		Lease:              lease.DefaultConfig(),
		Store:              store.DefaultConfig(),
		Breaker:            breaker.DefaultConfig(),
		BatchSize:          256,
		ReadBlock:          50 * time.Millisecond,
		Parallel:           8,
		MaxAttempts:        5,
		MaxAttemptsLimit:   100,
		RetryBackoff:       200 * time.Millisecond,
		RetryBackoffMax:    time.Minute,
		MaxPayloadBytes:    1 << 20,
		UnknownHandlerWait: 10 * time.Minute,
		CheckTTL:           3 * time.Second,
		StallTimeout:       30 * time.Second,
		ClaimEvery:         200 * time.Millisecond,
		FailoverOnRefused:  true,
	}
}

// Validate explains settings that cannot work together.
func (c Config) Validate() error {
	var errs []error
	if c.MetricsTLS && c.TLS == nil {
		errs = append(errs, errors.New("metrics over TLS needs the worker's TLS certificate (--tls-cert, --tls-key, --tls-ca)"))
	}
	if c.ID == "" {
		errs = append(errs, errors.New("worker id must not be empty"))
	}
	if err := validateGroups(c.Groups); err != nil {
		errs = append(errs, err)
	}
	if err := c.Ring.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Lease.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Store.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ClaimEvery <= 0 || c.ClaimEvery > c.Lease.TTL/2 {
		// Peers notice a dead member's lease only on this tick.
		errs = append(errs, fmt.Errorf("claim interval (%v) must be positive and at most half the lease TTL (%v)", c.ClaimEvery, c.Lease.TTL))
	}
	if err := c.Store.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Store.Partitions != c.Ring.Partitions {
		errs = append(errs, fmt.Errorf("store partitions (%d) must equal ring partitions (%d)", c.Store.Partitions, c.Ring.Partitions))
	}
	if c.BatchSize < 1 || c.Parallel < 1 || c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("batch size (%d), parallelism (%d) and max attempts (%d) must be at least 1", c.BatchSize, c.Parallel, c.MaxAttempts))
	}
	if c.MaxAttemptsLimit < c.MaxAttempts {
		errs = append(errs, fmt.Errorf("max attempts limit (%d) must be at least the default max attempts (%d)", c.MaxAttemptsLimit, c.MaxAttempts))
	}
	if c.RetryBackoff <= 0 || c.RetryBackoffMax < c.RetryBackoff {
		errs = append(errs, fmt.Errorf("retry backoff (%v) must be positive and at most the retry backoff cap (%v)", c.RetryBackoff, c.RetryBackoffMax))
	}
	if c.UnknownHandlerWait <= 0 {
		errs = append(errs, fmt.Errorf("the wait for a worker that serves a job's handler must be positive, got %v", c.UnknownHandlerWait))
	}
	if c.MaxPayloadBytes < 1 {
		errs = append(errs, fmt.Errorf("max payload must be positive, got %d", c.MaxPayloadBytes))
	}
	if c.StallTimeout <= c.CheckTTL {
		errs = append(errs, fmt.Errorf("stall timeout (%v) must exceed the check TTL (%v), and should exceed every plugin call's deadline", c.StallTimeout, c.CheckTTL))
	}
	if c.CheckTTL < time.Second {
		errs = append(errs, fmt.Errorf("consul check TTL must be at least 1s, got %v", c.CheckTTL))
	}
	if c.ReadBlock <= 0 || c.ReadBlock >= c.CheckTTL/2 {
		errs = append(errs, fmt.Errorf("read block (%v) must be positive and under half the check TTL (%v)", c.ReadBlock, c.CheckTTL))
	}
	return errors.Join(errs...)
}

// routing is c.Routing, or a fixed layout of Ring.Partitions for a Config
// that was not through New (unit tests of one part).
func (c Config) routing() *routing.Table {
	if c.Routing != nil {
		return c.Routing
	}
	return routing.New(c.Ring.Partitions)
}
