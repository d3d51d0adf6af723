package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /metrics of one registry. Start it once; Stop is safe to
// call twice or before Start.
type Server struct {
	lis   net.Listener
	srv   *http.Server
	log   *slog.Logger
	once  sync.Once
	stops []func()
}

// Option changes what a Server serves.
type Option func(*options)

type options struct {
	profiles bool
	mounts   []mount
	tls      *tls.Config
}

type mount struct {
	pattern, what string
	h             http.Handler
}

// WithHandler also serves h at pattern (a ServeMux pattern such as
// "/ui/"); what names it on the index page. A handler with a Stop method
// is stopped with the server.
func WithHandler(pattern, what string, h http.Handler) Option {
	return func(o *options) { o.mounts = append(o.mounts, mount{pattern, what, h}) }
}

// WithTLS serves over TLS with cfg (for the worker: mutual TLS with the
// cluster's certificates), instead of plain HTTP.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithProfiles also serves Go's profiler at /debug/pprof/. Off by default:
// a profile shows code paths and data, and a CPU profile or trace costs
// the worker CPU for as long as it runs.
func WithProfiles() Option { return func(o *options) { o.profiles = true } }

// Listen binds addr (host:port; port 0 picks a free one) so the address is
// known, and registrable in Consul, before serving starts.
func Listen(addr string, reg *prometheus.Registry, logger *slog.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	if o.tls != nil {
		lis = tls.NewListener(lis, o.tls)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	index := "corral worker: metrics at /metrics"
	if o.profiles {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		index += ", Go profiles at /debug/pprof/"
	}
	var stops []func()
	for _, m := range o.mounts {
		mux.Handle(m.pattern, m.h)
		index += ", " + m.what + " at " + m.pattern
		if s, ok := m.h.(interface{ Stop() }); ok {
			stops = append(stops, s.Stop)
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, index)
	})
	return &Server{lis: lis, log: logger, stops: stops,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Start serves in the background.
func (s *Server) Start() {
	go func() {
		if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "addr", s.Addr(), "err", err)
		}
	}()
}

// Stop closes the listener and waits up to a second for scrapes in flight.
func (s *Server) Stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		for _, stop := range s.stops {
			stop()
		}
	})
}

// AdvertiseAddr is the address to publish for a server bound to bound: an
// unspecified host (":9464", "0.0.0.0:9464") is replaced by host, the host
// peers reach this worker on.
func AdvertiseAddr(bound, host string) string {
	h, p, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(host, p)
	}
	return bound
}
