package worker

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/store"
)

// Version is the worker's release, shown in Consul service meta. Set it at
// build time: -ldflags "-X github.com/corralhq/corral/internal/worker.Version=v1.2.3".
var Version = "dev"

// workerMetrics feeds the Prometheus collectors. A nil *workerMetrics does
// nothing, so workers built without metrics (tests) need no set-up.
type workerMetrics struct {
	m    *metrics.Worker
	addr string // advertised /metrics address, for Consul meta
}

// serveMetrics builds the worker's collectors, serves them on addr
// (host:port, port 0 for a free one) and records the address so Start
// publishes it in the service meta "metrics". Stop stops the server.
func (w *Worker) serveMetrics(addr string) error {
	if w.metrics != nil {
		return fmt.Errorf("worker: metrics already served on %s", w.metrics.addr)
	}
	m := metrics.NewWorker(w.cfg.ID, w.metricsSource())
	srv, err := metrics.Listen(addr, m.Registry(), w.log)
	if err != nil {
		return err
	}
	host, _, err := splitHostPort(w.cfg.Advertise)
	if err != nil {
		srv.Stop()
		return err
	}
	w.metrics = &workerMetrics{m: m, addr: metrics.AdvertiseAddr(srv.Addr(), host)}
	w.exec.metrics = w.metrics
	w.relay.metrics = w.metrics
	// Count membership snapshots by wrapping the registry, not by editing
	// the membership loop.
	w.registry = countingRegistry{registryAPI: w.registry, m: w.metrics}
	srv.Start()
	w.life.metrics = srv
	w.log.Info("serving metrics", "addr", srv.Addr(), "advertised", w.metrics.addr)
	return nil
}

// MetricsAddr is the advertised /metrics address, "" when not served.
func (w *Worker) MetricsAddr() string {
	if w.metrics == nil {
		return ""
	}
	return w.metrics.addr
}

// metricsSource reads counters and gauges the worker keeps anyway, at
// scrape time.
func (w *Worker) metricsSource() metrics.Source {
	src := metrics.Source{
		Fenced:          w.exec.fenced.Load,
		Moves:           w.own.stats.moves.Load,
		PartitionsOwned: func() int { return len(w.grants.snapshot()) },
		LeaseRemaining:  w.keeper.Remaining,
		QueueLag: func(ctx context.Context) (int64, error) {
			owned := w.grants.snapshot()
			if len(owned) == 0 {
				return 0, nil
			}
			parts := make([]int, 0, len(owned))
			for p := range owned {
				parts = append(parts, p)
			}
			depth, err := w.store.Depth(ctx, parts)
			var n int64
			for _, d := range depth {
				n += d
			}
			return n, err
		},
		Breakers: func() []metrics.PeerBreaker {
			states := w.peers.Breakers().States()
			out := make([]metrics.PeerBreaker, len(states))
			for i, s := range states {
				out[i] = metrics.PeerBreaker{Peer: s.Peer, State: breakerLevel(s.State)}
			}
			return out
		},
	}
	// The plugin host reports restarts if it counts them.
	if r, ok := w.handlers.(interface{ Restarts() int64 }); ok {
		src.PluginRestarts = r.Restarts
	}
	return src
}

func breakerLevel(s breaker.State) int {
	switch s {
	case breaker.StateHalfOpen:
		return 1
	case breaker.StateOpen:
		return 2
	}
	return 0
}

// serviceMeta is the Consul service meta a person sees in the UI and
// Prometheus' Consul discovery relabels on.
func (w *Worker) serviceMeta() map[string]string {
	meta := map[string]string{"partitions": fmt.Sprint(w.cfg.Ring.Partitions), "version": Version}
	if a := w.MetricsAddr(); a != "" {
		meta["metrics"] = a
	}
	return meta
}

// serviceTags lets a scrape config select workers that serve metrics.
func (w *Worker) serviceTags() []string {
	if w.MetricsAddr() != "" {
		return []string{"corral-worker", "metrics"}
	}
	return []string{"corral-worker"}
}

// observeBatch counts a committed batch's outcomes per handler.
func (m *workerMetrics) observeBatch(jobs []store.Job, b *store.Batch) {
	if m == nil {
		return
	}
	handlerOf := make(map[string]string, len(jobs))
	for _, j := range jobs {
		handlerOf[j.ID] = j.Handler
	}
	count := map[string]int{}
	for _, id := range b.Done {
		count[handlerOf[id]]++
	}
	for h, n := range count {
		m.m.Committed(h, n)
	}
	clear(count)
	for _, j := range b.Retries {
		count[j.Handler]++
	}
	for h, n := range count {
		m.m.Retried(h, n)
	}
	clear(count)
	for _, d := range b.Dead {
		count[d.Job.Handler]++
	}
	for h, n := range count {
		m.m.DeadLettered(h, n)
	}
}

// registryAPI lets countingRegistry embed the interface under another name.
type registryAPI = Registry

// countingRegistry counts the membership snapshots the worker consumes.
type countingRegistry struct {
	registryAPI
	m *workerMetrics
}

func (c countingRegistry) Watch(ctx context.Context) <-chan discovery.Snapshot {
	in := c.registryAPI.Watch(ctx)
	out := make(chan discovery.Snapshot)
	go func() {
		defer close(out)
		for snap := range in {
			c.m.m.MembershipChanged(len(snap.Members))
			select {
			case out <- snap:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
