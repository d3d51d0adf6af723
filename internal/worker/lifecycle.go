package worker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc"
)

// startTimeout bounds the part of Start that talks to Redis and Consul.
const startTimeout = 10 * time.Second

// service is a part with a lifecycle of its own: the plugin host.
type service interface {
	Start(ctx context.Context) error
	Stop()
}

// lifecycle is what Start started, stopped by Stop in reverse order.
type lifecycle struct {
	plugins  service            // nil unless the handlers have a lifecycle
	metrics  *metrics.Server    // nil unless Config.MetricsAddr is set
	api      *grpc.Server       // nil unless Config.Listener is set
	cancel   context.CancelFunc // stops the loops
	wg       sync.WaitGroup
	stopOnce sync.Once

	regMu sync.Mutex
	reg   *discovery.Registration // what Start registered in Consul; nil before Start and once stopping
}

// Start brings the worker up, each part before those that need it: the
// plugin host (when the handlers have a lifecycle), the metrics endpoint,
// the gRPC API (served before registering, so peers that see this worker
// in Consul can call it), then it checks the cluster's partition count,
// takes the lease, registers in Consul and starts the loops. If any step
// fails, what was started is stopped again.
func (w *Worker) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			w.stopServices()
		}
	}()
	if p, ok := w.handlers.(service); ok {
		if err := p.Start(ctx); err != nil {
			return err
		}
		w.life.plugins = p
	}
	if w.cfg.MetricsAddr != "" {
		if err := w.serveMetrics(w.cfg.MetricsAddr); err != nil {
			return err
		}
	}
	if w.cfg.Listener != nil {
		srv := grpc.NewServer(append(peer.ServerOptions(), w.tlsServerOptions()...)...)
		workerpb.RegisterWorkerServer(srv, w.API())
		lis := w.cfg.Listener
		go func() {
			if err := srv.Serve(lis); err != nil {
				w.log.Error("gRPC server stopped", "err", err)
			}
		}()
		w.life.api = srv
	}
	if err := w.pingRedis(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := w.store.EnsurePartitions(ctx); err != nil {
		return err
	}
	layout, err := w.store.Layout(ctx)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if layout.P != w.cfg.Ring.Partitions {
		w.log.Info("the cluster was resharded: using its partition count, not --partitions", "partitions", layout.P, "flag", w.cfg.Ring.Partitions)
	}
	w.cfg.routing().Store(layout)
	if err := w.flow.refresh(ctx); err != nil {
		return fmt.Errorf("worker: read the handlers' flow settings: %w", err)
	}
	w.exec.lastLoop.Store(time.Now().UnixNano())
	w.keeper.RenewOnlyWhile(func() bool {
		return time.Since(w.exec.lastRound()) < w.cfg.StallTimeout
	})
	if err := w.keeper.Start(ctx); err != nil {
		return err
	}
	host, port, err := splitHostPort(w.cfg.Advertise)
	if err != nil {
		w.keeper.Stop()
		return err
	}
	meta, err := w.api.report.serviceMeta()
	if err != nil {
		w.keeper.Stop()
		return err
	}
	meta[metaLease] = w.keeper.Token()
	reg := discovery.Registration{ID: w.cfg.ID, Address: host, Port: port, CheckTTL: w.cfg.CheckTTL,
		Meta: meta, Tags: w.api.report.serviceTags()}
	if err := w.registry.Register(ctx, reg); err != nil {
		w.keeper.Stop()
		return fmt.Errorf("worker: register in Consul: %w", err)
	}
	w.life.regMu.Lock()
	w.life.reg = &reg
	w.life.regMu.Unlock()
	w.own.noteConsul(true)
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.life.cancel = stop
	w.exec.lastLoop.Store(time.Now().UnixNano())
	w.goLoop(func() { w.own.watchMembers(w.registry.Watch(runCtx)) })
	w.goLoop(func() { w.own.run(runCtx) })
	w.goLoop(func() { w.exec.run(runCtx) })
	w.goLoop(func() { w.relay.run(runCtx) })
	w.goLoop(func() { w.relay.sweepLoop(runCtx) })
	w.goLoop(func() { w.sched.run(runCtx) })
	w.goLoop(func() { w.flow.run(runCtx) })
	w.goLoop(func() { w.health.run(runCtx) })
	w.goLoop(func() { w.events.run(runCtx) })
	w.goLoop(func() { w.consume.run(runCtx) })
	w.goLoop(func() { w.reshard.run(runCtx) })
	w.log.Info("worker started", "advertise", w.cfg.Advertise, "partitions", w.cfg.routing().Partitions(), "token", w.keeper.Token())
	return nil
}

func (w *Worker) goLoop(f func()) {
	w.life.wg.Add(1)
	go func() {
		defer w.life.wg.Done()
		f()
	}()
}

// Stop hands off gracefully: it stops the loops (an in-flight batch
// finishes or is abandoned uncommitted), leaves Consul meanwhile, releases
// every partition and deletes the lease, which peers hear of through Redis
// and claim at once; then it stops the gRPC API, the metrics endpoint and
// the plugin host. Safe to call twice, and before Start.
func (w *Worker) Stop() {
	w.life.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.own.draining.Store(true)
		w.life.regMu.Lock()
		w.life.reg = nil // a reload from now on does not register again
		w.life.regMu.Unlock()
		if w.life.cancel != nil {
			w.life.cancel()
		}
		dereg := make(chan struct{})
		go func() {
			defer close(dereg)
			if err := w.registry.Deregister(ctx); err != nil {
				w.log.Warn("deregister from Consul failed", "err", err)
			}
		}()
		w.life.wg.Wait()
		w.own.refreshLayout(ctx, true) // out of the layout: peers take up our partitions as we release them
		w.own.releaseAll(ctx)
		w.keeper.Stop()
		<-dereg
		w.peers.Close()
		committed, fenced := w.exec.counts()
		w.log.Info("worker stopped", "committed", committed, "fenced", fenced)
		w.stopServices()
	})
}

// stopServices stops the gRPC API, the metrics endpoint and the plugin
// host, those of them that run.
func (w *Worker) stopServices() {
	if w.life.api != nil {
		w.life.api.Stop()
		w.life.api = nil
	}
	if w.topicsRedis != nil && w.topicsRedis != w.store.Client() {
		w.topicsRedis.Close() // after the API: no subscription reads any more
		w.topicsRedis = nil
	}
	if w.life.metrics != nil {
		w.life.metrics.Stop()
		w.life.metrics = nil
	}
	if w.life.plugins != nil {
		w.life.plugins.Stop()
		w.life.plugins = nil
	}
}

// ReloadPlugins relaunches the plugins from their binaries (hot upgrade,
// SIGHUP or the ReloadPlugins RPC) and publishes the handler set they
// serve now in Consul, so peers see a handler the new version added. It
// says what changed: the old and new version of every plugin when the
// handlers report them (plugins/host.Manager does).
func (w *Worker) ReloadPlugins(ctx context.Context) (*workerpb.ReloadPluginsResponse, error) {
	plugins, err := reloadPlugins(ctx, w.handlers)
	if err != nil {
		return nil, err
	}
	for _, c := range plugins.GetChanges() {
		w.events.tell(store.ClusterEvent{Kind: "plugin.reloaded", Member: w.cfg.ID, Plugin: c.GetName(), From: c.GetFromVersion(), To: c.GetToVersion()})
	}
	w.life.regMu.Lock()
	defer w.life.regMu.Unlock()
	if w.life.reg == nil {
		return plugins, nil // not registered (yet, or any more)
	}
	meta, err := w.api.report.serviceMeta()
	if err != nil {
		return plugins, err
	}
	meta[metaLease] = w.life.reg.Meta[metaLease]
	reg := *w.life.reg
	reg.Meta = meta
	// Registering again keeps the check's status: the worker stays a member.
	if err := w.registry.Register(ctx, reg); err != nil {
		return plugins, fmt.Errorf("worker: plugins reloaded, but publishing their handlers in Consul failed: %w", err)
	}
	w.life.reg = &reg
	return plugins, nil
}

// loadingWait bounds how long a starting worker waits for Redis to load
// its dataset (a restart with a large AOF).
const loadingWait = 5 * time.Minute

// pingRedis checks that Redis answers, waiting while it answers LOADING
// (saying so every few seconds).
func (w *Worker) pingRedis(ctx context.Context) error {
	deadline := time.Now().Add(loadingWait)
	var said time.Time
	for {
		pctx, cancel := context.WithTimeout(ctx, startTimeout)
		err := w.store.Ping(pctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "LOADING") {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (still loading after %v)", err, loadingWait)
		}
		if time.Since(said) > 5*time.Second {
			w.log.Info("Redis is loading its dataset; waiting for it", "waited_up_to", loadingWait)
			said = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
