package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/peer"
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
	peers    *peer.Pool

	ring  atomic.Pointer[sharding.Ring]
	own   ownership
	addrs atomic.Pointer[map[string]string] // member id → gRPC address

	calls callWaiters
	// direct serializes direct calls per partition (by p mod its size),
	// so two on one key do not run on the same state and refuse each other.
	direct      [64]sync.Mutex
	states      stateCache // entity states of recent direct calls
	retryBudget *breaker.Budget

	mu    sync.Mutex
	owned map[int]lease.Grant // partition → the grant we commit under
	// releasing holds the partitions given up whose release Redis has not
	// confirmed yet; they are released again until it does.
	releasing map[int]bool
	// batchMu is held while batches are processed, so a release waits for
	// the in-flight batch of the partition it gives up.
	batchMu sync.RWMutex

	kick     chan struct{} // reconcile ownership now
	relayReq chan int      // partitions with fresh outbox entries

	lastLoop  atomic.Int64 // unix nanos of the last executor round
	committed atomic.Int64
	fenced    atomic.Int64
	moves     atomic.Int64
	metrics   *workerMetrics // nil unless ServeMetrics was called

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
	token := lease.NewToken(cfg.ID)
	keeper, err := lease.NewKeeper(rdb, cfg.Lease, token, cfg.ID, time.Now, logger)
	if err != nil {
		return nil, err
	}
	peers, err := peer.NewPool(cfg.Breaker, logger)
	if err != nil {
		return nil, err
	}
	return &Worker{
		cfg: cfg, log: logger.With("worker", cfg.ID), rdb: rdb,
		store: store.New(rdb, cfg.Store), registry: registry, handlers: handlers, keeper: keeper,
		peers: peers, retryBudget: breaker.DefaultBudget(),
		owned: map[int]lease.Grant{}, releasing: map[int]bool{}, kick: make(chan struct{}, 1), relayReq: make(chan int, 1024),
		own: ownership{clock: time.Now()},
	}, nil
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
	w.lastLoop.Store(time.Now().UnixNano())
	w.keeper.RenewOnlyWhile(func() bool {
		return time.Since(time.Unix(0, w.lastLoop.Load())) < w.cfg.StallTimeout
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
	w.noteConsul(true)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.lastLoop.Store(time.Now().UnixNano())
	w.goLoop(func() { w.watchMembers(runCtx) })
	w.goLoop(func() { w.ownershipLoop(runCtx) })
	w.goLoop(func() { w.executorLoop(runCtx) })
	w.goLoop(func() { w.relayLoop(runCtx) })
	w.goLoop(func() { w.healthLoop(runCtx) })
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
		w.releaseAll(ctx)
		w.keeper.Stop()
		<-dereg
		w.peers.Close()
		w.log.Info("worker stopped", "committed", w.committed.Load(), "fenced", w.fenced.Load())
	})
}

// releaseAll hands every owned partition off, and those whose release
// did not go through before; it returns how many it freed.
func (w *Worker) releaseAll(ctx context.Context) int {
	parts := w.pendingReleases()
	for p := range w.ownedSnapshot() {
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return 0
	}
	n, err := w.release(ctx, parts)
	if err != nil {
		w.log.Warn("release failed; those partitions move when the lease expires", "err", err)
	}
	return n
}

func (w *Worker) partitionOf(key string) int { return sharding.PartitionOf(key, w.cfg.Ring.Partitions) }

func (w *Worker) maxAttempts(handler string) int {
	if h, ok := w.handlers.Handlers()[handler]; ok && h.MaxAttempts > 0 {
		return h.MaxAttempts
	}
	return w.cfg.MaxAttempts
}

func (w *Worker) ownedSnapshot() map[int]lease.Grant {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int]lease.Grant, len(w.owned))
	for p, e := range w.owned {
		out[p] = e
	}
	return out
}

// drop stops partition p if it is still held under grant (a fenced commit).
func (w *Worker) drop(p int, grant lease.Grant) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.owned[p] == grant {
		delete(w.owned, p)
	}
}

func isFenced(err error) bool { return errors.Is(err, lease.ErrFenced) }
