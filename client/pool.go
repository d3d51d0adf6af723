package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// MaxMessageBytes bounds one gRPC message between coordinator and workers.
const MaxMessageBytes = 64 << 20

// windowBytes is the HTTP/2 flow-control window of worker connections.
// A fixed window turns off gRPC's bandwidth probing, which pings along
// with every small message; calls are small and latency is what counts.
const windowBytes = 1 << 20

// streamWorkers is how many goroutines a worker's gRPC server keeps for
// incoming calls, instead of starting one per call (more are started when
// all are busy).
const streamWorkers = 16

// ServerOptions are the options of a worker's gRPC server that go with
// the client's (flow-control window, stream workers).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes),
		grpc.NumStreamWorkers(streamWorkers)}
}

// Pool holds one connection and one circuit breaker per worker address.
type Pool struct {
	breakers *breaker.Set
	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn
}

// NewPool returns a pool whose calls go through breakers.
func NewPool(breakers *breaker.Set) *Pool {
	return &Pool{breakers: breakers, conns: map[string]*grpc.ClientConn{}}
}

// Breakers exposes the per-peer breakers (for status and logs).
func (p *Pool) Breakers() *breaker.Set { return p.breakers }

func (p *Pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.Dial(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
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

// PeerFault reports whether err says something about the peer (down, slow,
// overloaded) rather than about the request. Only those count against a
// peer's breaker and make the client try another worker.
func PeerFault(err error) bool {
	if err == nil {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.OutOfRange, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated, codes.Canceled:
		return false
	}
	return true
}
