// Command worker runs one member of a Corral cluster: it registers in
// Consul, owns the partitions the layout in Redis gives it, and runs their jobs
// through handler plugins, committing to Redis under fencing epochs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/corralhq/corral/internal/routing"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/internal/worker"
	"github.com/corralhq/corral/plugins/host"
	"github.com/redis/go-redis/v9"
)

const usage = `Usage: worker [flags] --plugin PATH[@sha256=HEX] [--plugin ...]

Runs one Corral worker. Start as many as you like against the same Consul
and Redis; they split the partitions between them evenly (each holds
P/workers, rounded down or up; a worker that joins takes its share from
the others and nothing else moves) and take over each other's partitions
when one stops or dies. SIGTERM or SIGINT hands the partitions off
gracefully.

SIGHUP reloads the plugins from their binaries without a restart (so does
coordinator reload): batches in flight finish on the old version, new ones
go to the new version; if a new binary fails to start, the old one stays.
A plugin that crashes is relaunched from a private copy of the binary it
ran (in --plugin-cache-dir), whatever its path holds by then: only a
reload runs a new file. A plugin given as PATH@sha256=HEX, or listed in
--plugin-checksums (the output of sha256sum, re-read at every start and
reload), is only launched from its path if its SHA-256 matches.

TLS: with --tls-cert, --tls-key and --tls-ca the gRPC API speaks mutual
TLS 1.3 only: a caller needs a certificate signed by that CA, and its role
(SAN URI corral://role/read|submit|admin|peer) decides which RPCs it may
call; calls to peers present this worker's certificate, which must have
role peer and name the --advertise host. SIGHUP also reads the three files
again, for the handshakes that follow. Without TLS the worker serves on a
loopback address only (with a warning), unless --insecure is given.
"coordinator certs" makes the certificates; see docs/security.md.

Each worker publishes the handlers it serves, with their plugin versions,
in its Consul service meta. Workers may run different plugin sets for a
while (a rolling upgrade adding a handler): submit and call refuse a job
whose key's owner does not serve its handler, naming the workers that
lack it, and coordinator status warns; a job that reaches such an owner
anyway (emitted, delayed, or moved with its partition) waits for one that
serves it, without spending attempts, for up to --unknown-handler-wait.

Flags:
`

func main() {
	// The job path allocates per batch and keeps little: at Go's default
	// GOGC of 100 the collector took about a fifth of this process's CPU
	// under load. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", cli.Explain(err))
		os.Exit(1)
	}
}

func run() error {
	cfg := worker.DefaultConfig()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	hostname, _ := os.Hostname()
	var plugins cli.Strings
	id := fs.String("id", "", "unique worker id (default: HOST-PORT)")
	listen := fs.String("listen", "127.0.0.1:0", "address of the worker gRPC API")
	advertise := fs.String("advertise", "", "address peers dial (default: the listen address)")
	var redisFlags cli.RedisFlags
	redisFlags.Register(fs)
	metricsAddr := fs.String("metrics", cli.Env("CORRAL_METRICS_ADDR", "127.0.0.1:0"),
		"address of the Prometheus /metrics endpoint, published in Consul meta \"metrics\"; empty turns it off (env CORRAL_METRICS_ADDR)")
	consulAddr := fs.String("consul", cli.DefaultConsulAddr(), "Consul agent HTTP address (env CORRAL_CONSUL_ADDR)")
	consulToken := fs.String("consul-token", "", "Consul ACL token (env CONSUL_HTTP_TOKEN)")
	fs.Var(&plugins, "plugin", "handler plugin binary to launch, PATH or PATH@sha256=HEX (repeatable)")
	hcfg := host.DefaultConfig()
	// The plugins are not handed the worker's credentials.
	hcfg.WithheldEnv = []string{"CORRAL_REDIS_PASSWORD", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_AUTH"}
	fs.StringVar(&hcfg.ChecksumFile, "plugin-checksums", "", "file of pinned plugin SHA-256s in sha256sum format, re-read at every start and reload")
	fs.StringVar(&hcfg.CacheDir, "plugin-cache-dir", "", "folder for private copies of the plugin binaries launched, which a crashed plugin is relaunched from; must allow executing files (default: the system's temporary folder)")
	fs.IntVar(&hcfg.MaxRestarts, "plugin-max-restarts", hcfg.MaxRestarts, "restart intensity: more plugin restarts than this within --plugin-restart-window mark the worker degraded")
	fs.DurationVar(&hcfg.RestartWindow, "plugin-restart-window", hcfg.RestartWindow, "window of the plugin restart intensity")
	fs.IntVar(&hcfg.MaxMessageBytes, "plugin-max-message", hcfg.MaxMessageBytes, "largest gRPC message between worker and plugin, in bytes (both ends)")
	fs.DurationVar(&hcfg.CallTimeout, "plugin-timeout", hcfg.CallTimeout, "deadline of a plugin call whose handlers declare no timeout")
	fs.IntVar(&cfg.Ring.Partitions, "partitions", cfg.Ring.Partitions, "partition count P of a new cluster; once the cluster exists its own count is used (coordinator reshard changes it)")
	fs.Int64Var(&cfg.BatchSize, "batch", cfg.BatchSize, "jobs read per partition per round")
	fs.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "partition batches processed at once")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", cfg.MaxAttempts, "attempts before a job is dead-lettered, when its handler declares none")
	fs.IntVar(&cfg.MaxPayloadBytes, "max-payload", cfg.MaxPayloadBytes, "largest accepted job payload in bytes")
	fs.DurationVar(&cfg.UnknownHandlerWait, "unknown-handler-wait", cfg.UnknownHandlerWait,
		"how long a job whose handler this worker does not serve waits, parked and without spending attempts, for an owner that serves it (a rolling upgrade adding the handler) before it is dead-lettered")
	fs.DurationVar(&cfg.Lease.TTL, "lease-ttl", cfg.Lease.TTL, "liveness lease TTL in Redis")
	fs.DurationVar(&cfg.Lease.RenewEvery, "lease-renew", cfg.Lease.RenewEvery, "lease renewal interval")
	fs.BoolVar(&cfg.FailoverOnRefused, "failover-on-refused", cfg.FailoverOnRefused,
		"take a dead peer's partitions over as soon as its gRPC port, which accepted this worker's watch connection, refuses connections (a killed process), instead of waiting for its lease TTL; a paused or unreachable peer is not taken for dead. false waits for the lease")
	fs.DurationVar(&cfg.CheckTTL, "check-ttl", cfg.CheckTTL, "TTL of the worker's Consul check")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", cfg.StallTimeout, "a job loop stuck this long lets the lease lapse so its partitions move")
	fs.DurationVar(&cfg.Store.DoneRetention, "dedup-window", cfg.Store.DoneRetention,
		"how long a finished job id is remembered: the same id submitted, emitted or relayed again within it is not run twice; after it, once the partition's owner has swept its record (every 5s), it runs again (all workers must agree)")
	fs.DurationVar(&cfg.Store.ResultRetention, "result-retention", cfg.Store.ResultRetention,
		"how long job results are kept; a job's record, and so its dedup, lasts the longer of this and --dedup-window")
	fs.DurationVar(&cfg.Store.DeadRetention, "dead-retention", cfg.Store.DeadRetention,
		"how long dead letters are kept before the partition's owner drops them")
	fs.Int64Var(&cfg.Store.DeadMax, "dead-max", cfg.Store.DeadMax,
		"most dead letters kept per partition; past it the oldest are dropped (counted in corral_dead_letters_dropped_total)")
	fs.DurationVar(&cfg.Store.TopicRetention, "topic-retention", cfg.Store.TopicRetention,
		"how long a published message is kept, for subscribers that resume after a broken connection (coordinator watch, the client's Subscribe); a topic nobody publishes to is gone after it too")
	fs.DurationVar(&cfg.RetryBackoff, "retry-backoff", cfg.RetryBackoff, "wait before a failed job's second attempt; doubles per attempt, jittered")
	fs.DurationVar(&cfg.RetryBackoffMax, "retry-backoff-max", cfg.RetryBackoffMax, "longest wait between attempts")
	fs.Int64Var(&cfg.Store.MaxQueueDepth, "max-queue-depth", cfg.Store.MaxQueueDepth,
		"backpressure: a partition holding this many jobs (queued, delayed, parked, waiting) refuses more submits with ResourceExhausted until its owner works some off; clients back off and send the same ids again. 0 is no limit")
	fs.BoolVar(&cfg.Store.Audit, "audit", false, "record (partition, epoch, job id) of every commit in an audit stream")
	fs.IntVar(&cfg.Store.WaitReplicas, "redis-wait-replicas", 0, "wait (Redis WAIT) until this many replicas have every enqueue and commit before acknowledging it, so a promoted replica loses no acknowledged write; 0 is off. One primary with replicas only, not Redis Cluster")
	fs.DurationVar(&cfg.Store.WaitTimeout, "redis-wait-timeout", 500*time.Millisecond, "longest wait for --redis-wait-replicas; a submit not replicated in time is reported unavailable and retried by the client")
	fs.Int64Var(&cfg.Store.AuditMax, "audit-max", cfg.Store.AuditMax,
		"audit entries kept per partition with --audit, about: the oldest are trimmed in whole stream nodes")
	var tlsFlags cli.TLSFlags
	tlsFlags.Register(fs, "serve the gRPC API without TLS on a non-loopback --listen address: anyone who reaches it may call every RPC")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's profiler at /debug/pprof/ on the --metrics address")
	fs.BoolVar(&cfg.MetricsTLS, "metrics-tls", false, "serve the --metrics address (metrics, dashboard) with mutual TLS, with the worker's certificate: clients present one of the cluster's CA; the dashboard's replay and purge need an admin one")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	groups := fs.String("groups", "", "named groups this worker joins, comma-separated (coordinator broadcast --group G runs on their members); published in its Consul meta and tags")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(plugins) == 0 {
		return errors.New("at least one --plugin is required (see --help)")
	}
	cfg.Store.Partitions = cfg.Ring.Partitions
	if *groups != "" {
		cfg.Groups = strings.Split(*groups, ",")
	}
	if *consulToken == "" {
		*consulToken = os.Getenv("CONSUL_HTTP_TOKEN")
	}
	logger, err := cli.NewLogger(os.Stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if cfg.TLS, err = tlsFlags.Identity(); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	cfg.Advertise = *advertise
	if cfg.Advertise == "" {
		cfg.Advertise = lis.Addr().String()
	}
	cfg.ID = *id
	if cfg.ID == "" {
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		cfg.ID = hostname + "-" + port
	}
	if cfg.TLS == nil {
		err = checkPlaintext(*listen, lis, tlsFlags.Insecure, logger)
	} else if err = checkWorkerCert(cfg.TLS, cfg.Advertise); err == nil {
		logger.Info("serving the gRPC API with mutual TLS", "certificate", cfg.TLS.Describe(), "ca", tlsFlags.CA)
	}
	if err != nil {
		lis.Close()
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Check credentials before launching plugins, so a wrong password or
	// token fails in a second with a sentence saying what to fix.
	ropts, err := redisFlags.Options()
	if err != nil {
		return err
	}
	if cfg.Store.WaitReplicas > 0 && len(ropts.Addrs) > 1 {
		return errors.New("--redis-wait-replicas works with one primary and its replicas; with Redis Cluster, a write and its WAIT may reach different nodes")
	}
	ropts.PoolSize = 4 * cfg.Parallel
	rdb := redis.NewUniversalClient(ropts)
	defer rdb.Close()
	if err := cli.CheckRedis(ctx, rdb, redisFlags.Addrs); err != nil {
		return err
	}
	if err := checkEvictionPolicy(ctx, rdb); err != nil {
		return err
	}
	if err := checkConsulToken(ctx, *consulAddr, *consulToken); err != nil {
		return err
	}

	hcfg.Logger = logger
	hcfg.Checksums = map[string]string{}
	for _, v := range plugins {
		path, sum, err := host.ParsePluginFlag(v)
		if err != nil {
			return err
		}
		hcfg.Paths = append(hcfg.Paths, path)
		if sum != "" {
			hcfg.Checksums[path] = sum
		}
	}
	cfg.Routing = routing.New(cfg.Ring.Partitions)
	queries := worker.NewHostQueries(rdb, cfg.Routing)
	hcfg.Host = queries
	var restarted atomic.Pointer[func(plugin, version string)] // the worker's, once it is made
	hcfg.OnRestart = func(plugin, version string) {
		if f := restarted.Load(); f != nil {
			(*f)(plugin, version)
		}
	}
	plugs, err := host.New(hcfg)
	if err != nil {
		return err
	}
	registry, err := discovery.NewConsul(discovery.ConsulConfig{Address: *consulAddr, Token: *consulToken, Logger: logger})
	if err != nil {
		return err
	}
	cfg.Listener, cfg.MetricsAddr = lis, *metricsAddr
	// Off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp
	// asks for traces (see internal/tracing).
	if cfg.Tracer, err = tracing.FromEnv(ctx, "corral-worker"); err != nil {
		lis.Close()
		return err
	}
	if cfg.Tracer != nil {
		tracing.LogErrors(logger)
		logger.Info("tracing jobs: OTLP over HTTP", "endpoint", tracing.Endpoint())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := cfg.Tracer.Shutdown(sctx); err != nil {
				logger.Warn("tracing: flushing spans at exit", "err", err)
			}
		}()
	}
	w, err := worker.New(cfg, rdb, registry, plugs, logger)
	if err != nil {
		lis.Close()
		return err
	}
	// Handlers may query the entities of other workers' plugins too.
	queries.ServeEntitiesOf(w)
	onRestart := w.PluginRestarted
	restarted.Store(&onRestart)
	// SIGHUP: hot upgrade of the plugins (Reload logs what it did), and the
	// TLS certificate and CA read again for the handshakes that follow.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if cfg.TLS != nil {
				reloadTLS(cfg.TLS, cfg.Advertise, logger)
			}
			if _, err := w.ReloadPlugins(ctx); err != nil {
				logger.Warn("SIGHUP: plugin reload", "err", err)
			}
		}
	}()
	// Start runs the plugins, /metrics, the gRPC API and the job loops;
	// Stop hands the partitions off and stops them all.
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down: handing partitions off")
	w.Stop()
	return nil
}
