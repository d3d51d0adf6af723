package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// PeerBreaker is one peer's circuit breaker as metrics see it.
type PeerBreaker struct {
	Peer  string
	State int // 0 closed, 1 half-open, 2 open
}

// Source is what the worker exposes for reading at scrape time. Nil funcs
// are not reported.
type Source struct {
	Fenced          func() int64 // commits rejected by the fencing epoch, cumulative
	Moves           func() int64 // partitions claimed or released, cumulative
	PartitionsOwned func() int
	// Backlog reads what waits in the owned partitions. Called with a
	// short deadline on each scrape.
	Backlog        func(ctx context.Context) (Backlog, error)
	LeaseRemaining func() time.Duration
	Breakers       func() []PeerBreaker
	PluginRestarts func() int64
}

// Backlog is what waits in the partitions a worker owns, read at scrape
// time.
type Backlog struct {
	Jobs         int64     // queued, delayed, parked and waiting jobs, and outbox entries
	Outbox       int64     // outbox entries not relayed yet
	OldestOutbox time.Time // when the oldest of them was written; zero when none
	Dead         int64     // dead letters kept
}

// Worker holds one worker's collectors in a registry of its own, so two
// workers in one process (tests) do not collide.
type Worker struct {
	reg *prometheus.Registry

	committed, retried, dead, rejected *prometheus.CounterVec
	deadDropped                        *prometheus.CounterVec
	cancelled                          *prometheus.CounterVec
	failed                             *prometheus.CounterVec
	submitToCommit                     *prometheus.HistogramVec
	calls                              *prometheus.CounterVec
	callSeconds                        *prometheus.HistogramVec
	broadcasts                         *prometheus.CounterVec
	commitSeconds                      prometheus.Histogram
	handlerSeconds                     prometheus.Histogram
	membershipChanges                  prometheus.Counter
	members                            prometheus.Gauge
	lagErrors                          prometheus.Counter
	schedule                           scheduleCounters
}

// latencyBuckets span a fast local commit (a fraction of a millisecond) to
// a plugin call cut at its deadline (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// waitBuckets span a job committed in the batch after its submission
// (milliseconds) to one that waited behind a backlog, retries or a paused
// handler (an hour).
var waitBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// CallPaths are the values of the path label of the call metrics.
var CallPaths = []string{"direct", "forwarded", "fallback"}

// NewWorker registers the worker's collectors, the Go runtime's and the
// process's.
func NewWorker(workerID string, src Source) *Worker {
	reg := prometheus.NewRegistry()
	m := &Worker{
		reg: reg,
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_committed_total",
			Help: "Jobs applied by a fenced commit, per handler."}, []string{"handler"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_retried_total",
			Help: "Jobs scheduled for another attempt, per handler."}, []string{"handler"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_dead_lettered_total",
			Help: "Jobs moved to the dead-letter stream, per handler."}, []string{"handler"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_rejected_total",
			Help: "Jobs their handler rejected (sdk.Reject), finished with a reason, per handler."}, []string{"handler"}),
		cancelled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_cancelled_total",
			Help: "Jobs cancelled before they ran (or before their next attempt) by a fenced commit, per handler."}, []string{"handler"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_failed_total",
			Help: "Failed attempts (the plugin answered retry or fail, crashed or timed out), per handler; each is retried or dead-lettered."}, []string{"handler"}),
		submitToCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_submit_to_commit_seconds",
			Help:    "Time from a job's submission (or its not-before time, if later) to the commit that applied it, per handler.",
			Buckets: waitBuckets}, []string{"handler"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_calls_total",
			Help: "Synchronous calls this worker took from a client, per path: direct (it owns the key), forwarded (to the owner), fallback (the durable queue)."},
			[]string{"path"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_call_seconds",
			Help: "Duration of a synchronous call taken from a client, per path (see corral_calls_total).", Buckets: latencyBuckets},
			[]string{"path"}),
		broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_broadcast_runs_total",
			Help: "Broadcasts this worker was asked to run as a member, per handler and outcome: ran, already (ran under that id before) or failed."}, []string{"handler", "outcome"}),
		deadDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_dead_letters_dropped_total",
			Help: "Dead letters dropped by the owner's sweep: reason \"age\" past --dead-retention, \"cap\" past --dead-max."}, []string{"reason"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_commit_seconds",
			Help: "Duration of one fenced batch commit script, fenced or failed ones included.", Buckets: latencyBuckets}),
		handlerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_handler_call_seconds",
			Help: "Duration of one batched handler plugin call.", Buckets: latencyBuckets}),
		membershipChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_membership_changes_total",
			Help: "Changes of the live members that rebuilt the ring (a snapshot naming the same members counts nothing)."}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{Name: "corral_members",
			Help: "Healthy workers in the last membership snapshot."}),
		lagErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_queue_lag_errors_total",
			Help: "Scrapes whose queue lag could not be read from Redis."}),
	}
	reg.MustRegister(m.committed, m.retried, m.dead, m.rejected, m.cancelled, m.broadcasts, m.failed, m.submitToCommit, m.calls, m.callSeconds, m.deadDropped, m.commitSeconds, m.handlerSeconds,
		m.membershipChanges, m.members, m.lagErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_worker_info", Help: "Always 1; labels name the worker.",
			ConstLabels: prometheus.Labels{"worker": workerID}}, func() float64 { return 1 }))
	m.schedule = newScheduleCounters(reg)
	counter := func(name, help string, f func() int64) {
		if f != nil {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
				func() float64 { return float64(f()) }))
		}
	}
	counter("corral_commits_fenced_total", "Batch commits rejected because another worker holds a newer epoch.", src.Fenced)
	counter("corral_partition_moves_total", "Partitions this worker claimed or released.", src.Moves)
	counter("corral_plugin_restarts_total", "Handler plugin processes relaunched after a crash.", src.PluginRestarts)
	if src.PartitionsOwned != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_partitions_owned",
			Help: "Partitions this worker holds a fencing epoch for."}, func() float64 { return float64(src.PartitionsOwned()) }))
	}
	if src.LeaseRemaining != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_lease_remaining_seconds",
			Help: "Time this worker still trusts its liveness lease; 0 means it stopped committing."},
			func() float64 { return max(src.LeaseRemaining().Seconds(), 0) }))
	}
	if src.Backlog != nil {
		reg.MustRegister(&backlogCollector{read: src.Backlog, errors: m.lagErrors, now: time.Now})
	}
	if src.Breakers != nil {
		reg.MustRegister(&breakerCollector{read: src.Breakers})
	}
	return m
}

// Registry is where the collectors live, for the HTTP handler and tests.
func (m *Worker) Registry() *prometheus.Registry { return m.reg }

// Committed counts n jobs of handler applied by one commit.
func (m *Worker) Committed(handler string, n int) {
	m.committed.WithLabelValues(handler).Add(float64(n))
}

// Retried counts n jobs of handler scheduled for another attempt.
func (m *Worker) Retried(handler string, n int) { m.retried.WithLabelValues(handler).Add(float64(n)) }

// DeadLettered counts n jobs of handler moved to the dead-letter stream.
func (m *Worker) DeadLettered(handler string, n int) { m.dead.WithLabelValues(handler).Add(float64(n)) }

// Rejected counts n jobs of handler their handler rejected.
func (m *Worker) Rejected(handler string, n int) { m.rejected.WithLabelValues(handler).Add(float64(n)) }

// Cancelled counts n jobs of handler cancelled before they ran.
func (m *Worker) Cancelled(handler string, n int) {
	m.cancelled.WithLabelValues(handler).Add(float64(n))
}

// Failed counts n failed attempts of handler.
func (m *Worker) Failed(handler string, n int) { m.failed.WithLabelValues(handler).Add(float64(n)) }

// ObserveSubmitToCommit records how long a job of handler waited from its
// submission to its commit.
func (m *Worker) ObserveSubmitToCommit(handler string, d time.Duration) {
	m.SubmitToCommit(handler)(d)
}

// SubmitToCommit is ObserveSubmitToCommit for one handler, its histogram
// looked up once: for a batch's jobs, one lookup per handler instead of
// one per job.
func (m *Worker) SubmitToCommit(handler string) func(d time.Duration) {
	o := m.submitToCommit.WithLabelValues(handler)
	return func(d time.Duration) { o.Observe(max(d.Seconds(), 0)) }
}

// ObserveCall records a synchronous call taken from a client, by path
// (one of CallPaths).
func (m *Worker) ObserveCall(path string, d time.Duration) {
	m.calls.WithLabelValues(path).Inc()
	m.callSeconds.WithLabelValues(path).Observe(d.Seconds())
}

// BroadcastRun counts one member's run of a broadcast of handler, by outcome.
func (m *Worker) BroadcastRun(handler, outcome string) {
	m.broadcasts.WithLabelValues(handler, outcome).Inc()
}

// DeadDropped counts n dead letters dropped for reason ("age" or "cap").
func (m *Worker) DeadDropped(reason string, n int) {
	m.deadDropped.WithLabelValues(reason).Add(float64(n))
}

// ObserveCommit records the duration of one commit script.
func (m *Worker) ObserveCommit(d time.Duration) { m.commitSeconds.Observe(d.Seconds()) }

// ObserveHandlerCall records the duration of one plugin call.
func (m *Worker) ObserveHandlerCall(d time.Duration) { m.handlerSeconds.Observe(d.Seconds()) }

// MembershipChanged records a ring rebuilt for a changed set of live members.
func (m *Worker) MembershipChanged() { m.membershipChanges.Inc() }

// Members records a membership snapshot of n healthy workers.
func (m *Worker) Members(n int) { m.members.Set(float64(n)) }

var (
	lagDesc = prometheus.NewDesc("corral_queue_lag_jobs",
		"Jobs waiting in the partitions this worker owns (queues, delayed, parked and waiting jobs, and outboxes).", nil, nil)
	relayBacklogDesc = prometheus.NewDesc("corral_relay_backlog_entries",
		"Outbox entries (each the jobs one commit emitted) of the partitions this worker owns not relayed yet.", nil, nil)
	relayLagDesc = prometheus.NewDesc("corral_relay_lag_seconds",
		"Age of the oldest outbox entry of the partitions this worker owns not relayed yet; 0 when none waits.", nil, nil)
	deadDesc = prometheus.NewDesc("corral_dead_letters",
		"Dead letters kept in the partitions this worker owns.", nil, nil)
)

// backlogCollector reads the backlog from Redis at scrape time; pipelined
// round trips per scrape, nothing on the job path.
type backlogCollector struct {
	read   func(ctx context.Context) (Backlog, error)
	errors prometheus.Counter
	now    func() time.Time
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- relayBacklogDesc
	ch <- relayLagDesc
	ch <- deadDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.read(ctx)
	if err != nil {
		// No sample rather than a wrong one; the error counter says why.
		c.errors.Inc()
		return
	}
	var lag float64
	if !b.OldestOutbox.IsZero() {
		lag = max(c.now().Sub(b.OldestOutbox).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(b.Jobs))
	ch <- prometheus.MustNewConstMetric(relayBacklogDesc, prometheus.GaugeValue, float64(b.Outbox))
	ch <- prometheus.MustNewConstMetric(relayLagDesc, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(b.Dead))
}

var breakerDesc = prometheus.NewDesc("corral_peer_breaker_state",
	"Circuit breaker state towards a peer worker: 0 closed, 1 half-open, 2 open.", []string{"peer"}, nil)

type breakerCollector struct{ read func() []PeerBreaker }

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerDesc }

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.read() {
		ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, float64(b.State), b.Peer)
	}
}
