package metrics

import "github.com/prometheus/client_golang/prometheus"

// scheduleCounters count the ticks of the schedules a worker fires.
type scheduleCounters struct {
	fired, missed *prometheus.CounterVec
}

func newScheduleCounters(reg *prometheus.Registry) scheduleCounters {
	c := scheduleCounters{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_schedule_ticks_fired_total",
			Help: "Schedule ticks fired as jobs by this worker, per schedule (late ones included)."}, []string{"schedule"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_schedule_ticks_missed_total",
			Help: "Schedule ticks skipped, never to be fired: missed in an outage and left out by the schedule's catch-up, per schedule."}, []string{"schedule"}),
	}
	reg.MustRegister(c.fired, c.missed)
	return c
}

// TicksFired counts n ticks of schedule fired.
func (m *Worker) TicksFired(schedule string, n int) {
	m.schedule.fired.WithLabelValues(schedule).Add(float64(n))
}

// TicksMissed counts n ticks of schedule skipped.
func (m *Worker) TicksMissed(schedule string, n int) {
	m.schedule.missed.WithLabelValues(schedule).Add(float64(n))
}
