package metrics

import "github.com/prometheus/client_golang/prometheus"

// Flow counts what flow control holds back: jobs of paused handlers and of
// handlers at their concurrency or rate limit.
type Flow struct {
	waits *prometheus.CounterVec
	slots *prometheus.GaugeVec
}

// NewFlow registers the flow-control collectors in reg.
func NewFlow(reg *prometheus.Registry) *Flow {
	f := &Flow{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_flow_waits_total",
			Help: "Jobs held back, parked without spending an attempt, per handler and reason (paused, concurrency, rate); a job counts each time it is held back again."},
			[]string{"handler", "reason"}),
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "corral_flow_slots_held",
			Help: "Cluster-wide concurrency slots this worker's jobs hold now, per handler."}, []string{"handler"}),
	}
	reg.MustRegister(f.waits, f.slots)
	return f
}

// Waited counts n jobs of handler held back for reason.
func (f *Flow) Waited(handler, reason string, n int) {
	f.waits.WithLabelValues(handler, reason).Add(float64(n))
}

// Slots adds d to the slots held for handler (negative: given back).
func (f *Flow) Slots(handler string, d int) { f.slots.WithLabelValues(handler).Add(float64(d)) }
