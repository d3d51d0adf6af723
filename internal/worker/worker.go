package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/corralhq/corral/internal/routing"
	"log/slog"
	"time"

	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
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

// Worker is one member of the cluster: it composes the components below,
// each with its own state, and starts and stops them as one.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	registry Registry
	handlers Handlers
	keeper   *lease.Keeper
	peers    *peer.Pool

	own    *ownership   // claims and releases, on the ring's say
	exec   *executor    // runs the owned partitions' batches
	relay  *relay       // moves emitted jobs to their partitions
	sched  *scheduler   // fires the owned partitions' schedules
	flow   *flowControl // holds back paused and limited handlers' jobs
	health *health      // the Consul check
	api    *API         // the gRPC service: intake, call router, reporter

	topicsRedis redis.UniversalClient // subscriptions' own pool, closed on Stop
	events      *clusterEvents        // what this worker sees happen to the cluster
	consume     *consumers            // handlers' subscriptions to topics
	reshard     *resharder            // the routing table, and splits of our partitions

	life lifecycle // what Start started, for Stop
}

// New wires a worker. It does not touch the network until Start.
func New(cfg Config, rdb redis.UniversalClient, registry Registry, handlers Handlers, logger *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker: invalid config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Routing == nil {
		cfg.Routing = routing.New(cfg.Ring.Partitions)
	}
	cfg.Store.Routing = cfg.Routing
	token := lease.NewToken(cfg.ID)
	keeper, err := lease.NewKeeper(rdb, cfg.Lease, token, cfg.ID, time.Now, logger)
	if err != nil {
		return nil, err
	}
	log := logger.With("worker", cfg.ID)
	events := newClusterEvents(cfg.ID, log, nil)
	bcfg := cfg.Breaker
	bcfg.OnStateChange = func(peer string, _, to breaker.State) {
		switch to {
		case breaker.StateOpen:
			events.tell(store.ClusterEvent{Kind: "breaker.opened", Member: cfg.ID, To: peer})
		case breaker.StateClosed:
			events.tell(store.ClusterEvent{Kind: "breaker.closed", Member: cfg.ID, To: peer})
		}
	}
	var peerOpts []peer.Option
	if cfg.TLS != nil {
		peerOpts = append(peerOpts, peer.WithCredentials(cfg.TLS.ClientCredentials()))
	}
	peers, err := peer.NewPool(bcfg, logger, peerOpts...)
	if err != nil {
		return nil, err
	}
	g := newGrants()
	view := newMembership(cfg, log)
	claims := redisClaims{rdb}
	w := &Worker{
		cfg: cfg, log: log, store: store.New(rdb, cfg.Store), registry: registry, handlers: handlers,
		keeper: keeper, peers: peers,
		own: newOwnership(cfg, log, claims, keeper, g, view),
	}
	events.store = w.store
	w.events, w.own.events = events, events
	if cfg.FailoverOnRefused {
		w.own.deaths = newDeathWatch(cfg.ID, log, func(ctx context.Context, token string) (bool, error) {
			buried, err := lease.Bury(ctx, rdb, token)
			if buried {
				w.own.stats.buried.Add(1)
				w.own.wake()
			}
			return buried, err
		})
	}
	g.idle = func(p int) bool { return cfg.routing().Load().Pending(p) }
	w.reshard = &resharder{slots: make(chan struct{}, splitsAtOnce), self: cfg.ID, log: log, routes: cfg.Routing, store: w.store, grants: g, changed: w.own.wake, events: events}
	w.relay = newRelay(cfg, log, w.store, g)
	w.exec = newExecutor(cfg, log, w.store, handlers, g, keeper, w)
	w.exec.tracer = cfg.Tracer
	w.sched = newScheduler(cfg, log, w.store, g, keeper, w.relay)
	w.flow = newFlowControl(log, w.store, handlers, g, keeper.Token(), slotLease)
	w.exec.flow = w.flow
	w.health = &health{cfg: cfg, log: log, registry: registry, lease: keeper, own: w.own, grants: g,
		store: w.store, plugins: handlers, work: w.exec}
	catalog := &handlerCatalog{self: cfg.ID, local: handlers, view: view}
	w.exec.catalog = catalog
	intake := &jobIntake{cfg: cfg, store: w.store, plugins: handlers, catalog: catalog, tracer: cfg.Tracer, layout: w.reshard.refresh}
	w.api = &API{id: cfg.ID, store: w.store, intake: intake,
		router: &callRouter{cfg: cfg, log: log, grants: g, view: view, peers: peers, budget: breaker.DefaultBudget(),
			holders: claims, exec: w.exec, store: w.store, intake: intake},
		report: &reporter{cfg: cfg, store: w.store, events: w.store, registry: registry, holders: claims, peers: peers, grants: g,
			view: view, exec: w.exec, own: w.own, lease: keeper, handlers: handlers},
		reload: w.ReloadPlugins, drain: w.Drain, flow: w.flow}
	w.topicsRedis = store.CloneClient(rdb, maxSubscriptions)
	waits := store.New(w.topicsRedis, cfg.Store)
	w.api.reshard = w.reshard
	w.reshard.entities = w.entities
	w.api.topics = newTopicServer(log, cfg.Routing, waits)
	intake.commits = waits
	w.consume = &consumers{log: log, routes: cfg.Routing, handlers: intake.handlers, grants: g, topics: waits, store: w.store}
	w.api.inspect = &inspector{cfg: cfg, log: log, store: w.store, running: &w.exec.running, registry: registry, peers: peers}
	w.api.bcast = &broadcaster{self: cfg.ID, log: log, view: view, peers: peers, store: w.store, plugins: handlers,
		retention: cfg.Store.DoneRetention, maxPayload: cfg.MaxPayloadBytes}
	w.api.cancel = &canceller{cfg: cfg, log: log, store: w.store, grants: g, view: view, peers: peers, holders: claims,
		exec: w.exec, inspect: w.api.inspect}
	return w, nil
}

func (w *Worker) partitionOf(key string) int { return w.cfg.routing().PartitionOf(key) }

func isFenced(err error) bool { return errors.Is(err, lease.ErrFenced) }

// statesWritten drops the cached states a queue commit wrote.
func (w *Worker) statesWritten(writes []store.StateWrite) {
	w.api.router.direct.states.committed(writes)
}

// committed follows every commit of partition p: it wakes the Calls and
// result waiters of the jobs finished, and asks the relay to move the
// emitted jobs.
func (w *Worker) committed(p int, _ []store.Job, b *store.Batch) {
	w.api.router.calls.committed(b)
	if len(b.Emits) > 0 {
		w.relay.kick(p)
	}
}

// PluginRestarted records that a plugin was relaunched after its process
// died (plugins/host.Config.OnRestart).
func (w *Worker) PluginRestarted(plugin, version string) {
	w.events.tell(store.ClusterEvent{Kind: "plugin.restarted", Member: w.cfg.ID, Plugin: plugin, Detail: version})
}
