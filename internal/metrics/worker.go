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
	// QueueLag returns the jobs waiting in the owned partitions (queue and
	// outbox). Called with a short deadline on each scrape.
	QueueLag       func(ctx context.Context) (int64, error)
	LeaseRemaining func() time.Duration
	Breakers       func() []PeerBreaker
	PluginRestarts func() int64
}

// Worker holds one worker's collectors in a registry of its own, so two
// workers in one process (tests) do not collide.
type Worker struct {
	reg *prometheus.Registry

	committed, retried, dead, rejected *prometheus.CounterVec
	deadDropped                        *prometheus.CounterVec
	cancelled                          *prometheus.CounterVec
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
	reg.MustRegister(m.committed, m.retried, m.dead, m.rejected, m.cancelled, m.broadcasts, m.deadDropped, m.commitSeconds, m.handlerSeconds,
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
	if src.QueueLag != nil {
		reg.MustRegister(&lagCollector{read: src.QueueLag, errors: m.lagErrors})
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

var lagDesc = prometheus.NewDesc("corral_queue_lag_jobs",
	"Jobs waiting in the partitions this worker owns (queues and outboxes).", nil, nil)

// lagCollector reads the lag from Redis at scrape time; one pipelined round
// trip per scrape, nothing on the job path.
type lagCollector struct {
	read   func(ctx context.Context) (int64, error)
	errors prometheus.Counter
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := c.read(ctx)
	if err != nil {
		// No sample rather than a wrong one; the error counter says why.
		c.errors.Inc()
		return
	}
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(n))
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
