// Package peer calls workers' gRPC API: one connection and one circuit
// breaker per worker address. The public client and the worker (calling
// its peers) both use it.
package peer

import (
	"context"
	"fmt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"log/slog"
	"strings"
	"sync"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/internal/grpcopt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// ServerOptions are the options of a worker's gRPC server that go with the
// pool's: message limit, flow-control window, stream workers.
func ServerOptions() []grpc.ServerOption {
	return grpcopt.ServerOptions(grpcopt.MaxMessageBytes)
}

// Pool holds one connection and one circuit breaker per worker address.
type Pool struct {
	breakers *breaker.Set
	creds    credentials.TransportCredentials
	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn
}

// Option changes a Pool.
type Option func(*Pool)

// WithCredentials dials workers with creds (TLS) instead of plaintext.
func WithCredentials(creds credentials.TransportCredentials) Option {
	return func(p *Pool) {
		if creds != nil {
			p.creds = creds
		}
	}
}

// NewPool returns a pool whose calls go through breakers built from cfg;
// only a Fault counts against a peer's breaker. It dials in plaintext
// unless an option gives credentials.
func NewPool(cfg breaker.Config, logger *slog.Logger, opts ...Option) (*Pool, error) {
	cfg.Logger = logger
	cfg.IsSuccessful = func(err error) bool { return !Fault(err) }
	set, err := breaker.NewSet(cfg)
	if err != nil {
		return nil, fmt.Errorf("peer: breakers: %w", err)
	}
	p := &Pool{breakers: set, conns: map[string]*grpc.ClientConn{}, creds: insecure.NewCredentials()}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Breakers exposes the per-peer breakers (for status and logs).
func (p *Pool) Breakers() *breaker.Set { return p.breakers }

func (p *Pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.Dial(addr, append(grpcopt.DialOptions(grpcopt.MaxMessageBytes),
		grpc.WithTransportCredentials(p.creds))...)
	if err != nil {
		return nil, fmt.Errorf("peer: dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// Call runs fn against the worker at addr through its breaker, with the
// breaker's deadline.
func (p *Pool) Call(ctx context.Context, addr string, fn func(ctx context.Context, w workerpb.WorkerClient) error) error {
	c, err := p.conn(addr)
	if err != nil {
		return err
	}
	return p.breakers.Do(ctx, addr, func(ctx context.Context) error {
		return fn(ctx, workerpb.NewWorkerClient(c))
	})
}

// Stream returns a client of the worker at addr for a long-lived stream,
// which no breaker deadline may cut.
func (p *Pool) Stream(addr string) (workerpb.WorkerClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return workerpb.NewWorkerClient(c), nil
}

// CallDirect runs fn against the worker at addr bounded by ctx alone, not
// through its breaker: for calls whose length is a handler's, not a sign
// of the peer's health (a broadcast's part).
func (p *Pool) CallDirect(ctx context.Context, addr string, fn func(ctx context.Context, w workerpb.WorkerClient) error) error {
	c, err := p.conn(addr)
	if err != nil {
		return err
	}
	return fn(ctx, workerpb.NewWorkerClient(c))
}

// Forget closes the connection to a peer that left.
func (p *Pool) Forget(addr string) {
	p.mu.Lock()
	c, ok := p.conns[addr]
	delete(p.conns, addr)
	p.mu.Unlock()
	if ok {
		c.Close()
	}
	p.breakers.Forget(addr)
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		c.Close()
		delete(p.conns, addr)
	}
}

// Fault reports whether err says something about the peer (down, slow,
// overloaded) rather than about the request. Only those count against a
// peer's breaker and make a caller try another worker.
func Fault(err error) bool {
	if err == nil {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.OutOfRange, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated, codes.Canceled:
		return false
	case codes.ResourceExhausted:
		// A full queue: the peer is well and another would answer the
		// same. Any other exhaustion is the peer's own.
		return !QueueFull(err)
	}
	return true
}

// HandshakeFailed reports whether err is a TLS handshake that failed, on
// either side: a certificate refused, expired or missing, another CA, or
// TLS spoken to a plaintext server. Trying again will not help until the
// certificates change.
func HandshakeFailed(err error) bool {
	if err == nil || status.Code(err) != codes.Unavailable {
		return false
	}
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "authentication handshake failed") || strings.Contains(msg, "tls: ") || strings.Contains(msg, "x509: ")
}

// QueueFullReason is the ErrorInfo reason of a ResourceExhausted that a
// worker answers when a partition's queue is at --max-queue-depth.
const QueueFullReason = "QUEUE_FULL"

// QueueFull reports whether err is a worker's refusal for a full queue.
func QueueFull(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == QueueFullReason {
			return true
		}
	}
	return false
}
