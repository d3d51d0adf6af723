package metrics

import "github.com/prometheus/client_golang/prometheus"

// Flow counts what flow control holds back: jobs of paused handlers and of
// handlers at their concurrency or rate limit.
type Flow struct {
	waits *prometheus.CounterVec
	slots *prometheus.GaugeVec
}

// FlowInForce is one handler's flow settings as a worker applies them.
type FlowInForce struct {
	Handler     string
	Paused      bool
	Concurrency int     // 0: none
	Rate        float64 // jobs/s, 0: none
}

var inForceDesc = prometheus.NewDesc("corral_flow_in_force",
	"Flow controls this worker applies now, per handler: control paused (1), concurrency (the limit) or rate (jobs/s). A handler with none has no series.",
	[]string{"handler", "control"}, nil)

// inForce reports the settings a worker has read, so an operator (or a
// test) sees when every worker applies a change.
type inForce func() []FlowInForce

func (f inForce) Describe(ch chan<- *prometheus.Desc) { ch <- inForceDesc }

func (f inForce) Collect(ch chan<- prometheus.Metric) {
	for _, s := range f() {
		if s.Paused {
			ch <- prometheus.MustNewConstMetric(inForceDesc, prometheus.GaugeValue, 1, s.Handler, "paused")
		}
		if s.Concurrency > 0 {
			ch <- prometheus.MustNewConstMetric(inForceDesc, prometheus.GaugeValue, float64(s.Concurrency), s.Handler, "concurrency")
		}
		if s.Rate > 0 {
			ch <- prometheus.MustNewConstMetric(inForceDesc, prometheus.GaugeValue, s.Rate, s.Handler, "rate")
		}
	}
}

// NewFlow registers the flow-control collectors in reg; applied lists the
// flow settings in force (nil: none reported).
func NewFlow(reg *prometheus.Registry, applied func() []FlowInForce) *Flow {
	f := &Flow{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_flow_waits_total",
			Help: "Jobs held back, parked without spending an attempt, per handler and reason (paused, concurrency, rate); a job counts each time it is held back again."},
			[]string{"handler", "reason"}),
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "corral_flow_slots_held",
			Help: "Cluster-wide concurrency slots this worker's jobs hold now, per handler."}, []string{"handler"}),
	}
	reg.MustRegister(f.waits, f.slots)
	if applied != nil {
		reg.MustRegister(inForce(applied))
	}
	return f
}

// Waited counts n jobs of handler held back for reason.
func (f *Flow) Waited(handler, reason string, n int) {
	f.waits.WithLabelValues(handler, reason).Add(float64(n))
}

// Slots adds d to the slots held for handler (negative: given back).
func (f *Flow) Slots(handler string, d int) { f.slots.WithLabelValues(handler).Add(float64(d)) }
