package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// Registry is the part of service discovery a worker needs.
type Registry interface {
	Register(ctx context.Context, reg discovery.Registration) error
	SetHealth(ctx context.Context, s discovery.Status, output string) error
	Deregister(ctx context.Context) error
	Healthy(ctx context.Context) ([]discovery.Member, error)
	Watch(ctx context.Context) <-chan discovery.Snapshot
}

// Handlers runs jobs; plugins/host.Manager in production.
type Handlers interface {
	Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error)
	Handlers() map[string]host.HandlerInfo
	Plugins() []string
	// Reload relaunches the plugins from their binaries (hot upgrade) and
	// returns "name@version" of those now running.
	Reload(ctx context.Context) ([]string, error)
}

// Worker is one member of the cluster.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	rdb      redis.UniversalClient
	store    *store.Store
	registry Registry
	handlers Handlers
	keeper   *lease.Keeper
	peers    *client.Pool

	grants *grants     // partitions processed here, and their grants
	view   *membership // members, their addresses and the ring
	own    *ownership  // claims and releases

	exec    *executor      // runs the owned partitions' batches
	intake  *jobIntake     // validates and enqueues submitted jobs
	router  *callRouter    // routes Calls to their owner
	relay   *relay         // moves emitted jobs to their partitions
	health  *health        // the Consul check
	metrics *workerMetrics // nil unless ServeMetrics was called

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New wires a worker. It does not touch the network until Start.
func New(cfg Config, rdb redis.UniversalClient, registry Registry, handlers Handlers, logger *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker: invalid config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	var nonce [6]byte
	rand.Read(nonce[:])
	token := cfg.ID + "~" + hex.EncodeToString(nonce[:])
	keeper, err := lease.NewKeeper(rdb, cfg.Lease, token, cfg.ID, time.Now, logger)
	if err != nil {
		return nil, err
	}
	bcfg := cfg.Breaker
	bcfg.Logger = logger
	bcfg.IsSuccessful = func(err error) bool { return !client.PeerFault(err) }
	breakers, err := breaker.NewSet(bcfg)
	if err != nil {
		return nil, err
	}
	log := logger.With("worker", cfg.ID)
	g := newGrants()
	view := newMembership(cfg, log)
	w := &Worker{
		cfg: cfg, log: log, rdb: rdb,
		store: store.New(rdb, cfg.Store), registry: registry, handlers: handlers, keeper: keeper,
		peers:  client.NewPool(breakers),
		grants: g, view: view, own: newOwnership(cfg, log, redisClaims{rdb}, keeper, g, view),
	}
	w.relay = newRelay(cfg, log, w.store, g)
	w.exec = newExecutor(cfg, log, w.store, handlers, g, keeper, w)
	w.health = &health{cfg: cfg, log: log, registry: registry, lease: keeper, own: w.own, grants: g,
		store: w.store, plugins: handlers, work: w.exec}
	w.intake = &jobIntake{cfg: cfg, store: w.store, plugins: handlers}
	w.router = &callRouter{cfg: cfg, log: log, grants: g, view: view, peers: w.peers, budget: breaker.DefaultBudget(),
		holders: redisClaims{rdb}, exec: w.exec, store: w.store, intake: w.intake}
	return w, nil
}

// Start checks the cluster's partition count, takes the lease, registers in
// Consul and starts the loops. The gRPC API is served by the caller (see
// API) so it can choose the listener.
func (w *Worker) Start(ctx context.Context) error {
	if err := w.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("worker: cannot reach Redis: %w", err)
	}
	if err := w.store.EnsurePartitions(ctx); err != nil {
		return err
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
		return err
	}
	reg := discovery.Registration{ID: w.cfg.ID, Address: host, Port: port, CheckTTL: w.cfg.CheckTTL,
		Meta: w.serviceMeta(), Tags: w.serviceTags()}
	reg.Meta[metaLease] = w.keeper.Token()
	if err := w.registry.Register(ctx, reg); err != nil {
		w.keeper.Stop()
		return fmt.Errorf("worker: register in Consul: %w", err)
	}
	w.own.noteConsul(true)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.exec.lastLoop.Store(time.Now().UnixNano())
	w.goLoop(func() { w.own.watchMembers(w.registry.Watch(runCtx)) })
	w.goLoop(func() { w.own.run(runCtx) })
	w.goLoop(func() { w.exec.run(runCtx) })
	w.goLoop(func() { w.relay.run(runCtx) })
	w.goLoop(func() { w.health.run(runCtx) })
	w.log.Info("worker started", "advertise", w.cfg.Advertise, "partitions", w.cfg.Ring.Partitions, "token", w.keeper.Token())
	return nil
}

func (w *Worker) goLoop(f func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
	}()
}

// Stop hands off gracefully: it stops the loops (an in-flight batch
// finishes or is abandoned uncommitted), leaves Consul meanwhile, releases
// every partition and deletes the lease, which peers hear of through Redis
// and claim at once. Safe to call twice.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.own.draining.Store(true)
		if w.cancel != nil {
			w.cancel()
		}
		dereg := make(chan struct{})
		go func() {
			defer close(dereg)
			if err := w.registry.Deregister(ctx); err != nil {
				w.log.Warn("deregister from Consul failed", "err", err)
			}
		}()
		w.wg.Wait()
		w.own.releaseAll(ctx)
		w.keeper.Stop()
		<-dereg
		w.peers.Close()
		w.log.Info("worker stopped", "committed", w.exec.committed.Load(), "fenced", w.exec.fenced.Load())
	})
}

func (w *Worker) partitionOf(key string) int { return sharding.PartitionOf(key, w.cfg.Ring.Partitions) }

func isFenced(err error) bool { return errors.Is(err, lease.ErrFenced) }

// statesWritten drops the cached states a queue commit wrote.
func (w *Worker) statesWritten(writes []store.StateWrite) { w.router.direct.states.committed(writes) }

// committed follows every commit of partition p: it wakes the Calls and
// result waiters of the jobs finished, and asks the relay to move the
// emitted jobs.
func (w *Worker) committed(p int, _ []store.Job, b *store.Batch) {
	w.router.calls.committed(b)
	if len(b.Emits) > 0 {
		w.relay.kick(p)
	}
}
