package worker

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/authz"
	"google.golang.org/grpc"
)

// tlsServerOptions make the gRPC API require a client certificate from
// the cluster's CA and check every call against its role; none when the
// worker runs without TLS.
func (w *Worker) tlsServerOptions() []grpc.ServerOption {
	if w.cfg.TLS == nil {
		return nil
	}
	var last atomic.Int64 // unix nanos of the last refusal logged
	refused := func(addr net.Addr, err error) {
		// One line a second at most: a scanner must not flood the log.
		now := time.Now().UnixNano()
		if prev := last.Load(); now-prev < int64(time.Second) || !last.CompareAndSwap(prev, now) {
			return
		}
		w.log.Warn("refused a TLS connection", "remote", addr.String(), "err", err)
	}
	return []grpc.ServerOption{
		grpc.Creds(w.cfg.TLS.ServerCredentials(refused)),
		grpc.ChainUnaryInterceptor(authz.UnaryServerInterceptor(w.log)),
		grpc.ChainStreamInterceptor(authz.StreamServerInterceptor(w.log)),
	}
}
