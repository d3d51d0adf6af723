package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/ui"
)

// Version is the worker's release, shown in Consul service meta. Set it at
// build time: -ldflags "-X github.com/corralhq/corral/internal/worker.Version=v1.2.3".
var Version = "dev"

// workerMetrics feeds the Prometheus collectors. A nil *workerMetrics does
// nothing, so workers built without metrics (tests) need no set-up.
type workerMetrics struct {
	m    *metrics.Worker
	flow *metrics.Flow
	addr string // advertised /metrics address, for Consul meta
}

// serveMetrics builds the worker's collectors, serves them on addr
// (host:port, port 0 for a free one) and records the address so Start
// publishes it in the service meta "metrics". Stop stops the server.
func (w *Worker) serveMetrics(addr string) error {
	r := w.api.report
	if r.metrics != nil {
		return fmt.Errorf("worker: metrics already served on %s", r.metrics.addr)
	}
	m := metrics.NewWorker(w.cfg.ID, r.metricsSource())
	var opts []metrics.Option
	if w.cfg.Pprof {
		opts = append(opts, metrics.WithProfiles())
	}
	// The dashboard rides on the metrics listener: plain HTTP, read-only,
	// loopback unless --metrics says otherwise (docs/security.md).
	actions := ui.Actions{Allowed: w.cfg.TLS == nil}
	switch {
	case w.cfg.MetricsTLS:
		opts = append(opts, metrics.WithTLS(metricsTLS(w.cfg.TLS)))
		actions.Admin = adminOnly
		actions.Why = "replaying and purging dead letters needs an admin certificate"
	case !actions.Allowed:
		actions.Why = "with TLS on, replaying and purging dead letters needs an admin certificate, which this plain-HTTP dashboard cannot see: start the worker with --metrics-tls, or use 'coordinator dlq replay|purge'"
	}
	opts = append(opts, metrics.WithHandler(ui.Prefix, "dashboard", ui.New(w.cfg.ID, uiSource{r: r, dead: w.store, api: w.api}, actions)))
	srv, err := metrics.Listen(addr, m.Registry(), w.log, opts...)
	if err != nil {
		return err
	}
	host, _, err := splitHostPort(w.cfg.Advertise)
	if err != nil {
		srv.Stop()
		return err
	}
	r.metrics = &workerMetrics{m: m, flow: metrics.NewFlow(m.Registry(), w.flow.inForce), addr: metrics.AdvertiseAddr(srv.Addr(), host)}
	w.exec.metrics = r.metrics
	w.flow.metrics = r.metrics
	w.relay.metrics = r.metrics
	w.api.router.metrics = r.metrics
	w.sched.metrics = r.metrics
	w.api.bcast.metrics = r.metrics
	// The members gauge follows every snapshot, by wrapping the registry;
	// the change counter only the snapshots that rebuilt the ring.
	w.registry = countingRegistry{registryAPI: w.registry, m: r.metrics}
	w.api.report.view.changed = r.metrics.m.MembershipChanged
	srv.Start()
	w.life.metrics = srv
	w.log.Info("serving metrics", "addr", srv.Addr(), "advertised", r.metrics.addr)
	return nil
}

// MetricsAddr is the advertised /metrics address, "" when not served.
func (w *Worker) MetricsAddr() string { return w.api.report.metricsAddr() }

// observeBatch counts a committed batch's outcomes per handler.
func (m *workerMetrics) observeBatch(jobs []store.Job, b *store.Batch) {
	if m == nil {
		return
	}
	byID := make(map[string]*store.Job, len(jobs))
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	handlerOf := func(id string) string {
		if j := byID[id]; j != nil {
			return j.Handler
		}
		return ""
	}
	now := time.Now()
	count := map[string]int{}
	var observe map[string]func(time.Duration) // per handler, for the batch
	for _, id := range b.Done {
		count[handlerOf(id)]++
		// A delayed job is timed from when it fell due, not from its
		// submission.
		if j := byID[id]; j != nil && j.SubmittedAt > 0 {
			o := observe[j.Handler]
			if o == nil {
				if observe == nil {
					observe = map[string]func(time.Duration){}
				}
				o = m.m.SubmitToCommit(j.Handler)
				observe[j.Handler] = o
			}
			o(now.Sub(time.UnixMilli(max(j.SubmittedAt, j.NotBefore))))
		}
	}
	for h, n := range count {
		m.m.Committed(h, n)
	}
	clear(count)
	failed := map[string]int{}
	for _, j := range b.Retries {
		count[j.Handler]++
		failed[j.Handler]++
	}
	for h, n := range count {
		m.m.Retried(h, n)
	}
	clear(count)
	for _, d := range b.Dead {
		count[d.Job.Handler]++
		failed[d.Job.Handler]++
	}
	for h, n := range count {
		m.m.DeadLettered(h, n)
	}
	for h, n := range failed {
		m.m.Failed(h, n)
	}
	clear(count)
	for _, r := range b.Rejected {
		count[handlerOf(r.JobID)]++
	}
	for h, n := range count {
		m.m.Rejected(h, n)
	}
}

// registryAPI lets countingRegistry embed the interface under another name.
type registryAPI = Registry

// countingRegistry records the size of each membership snapshot the worker consumes.
type countingRegistry struct {
	registryAPI
	m *workerMetrics
}

func (c countingRegistry) Watch(ctx context.Context) <-chan discovery.Snapshot {
	in := c.registryAPI.Watch(ctx)
	out := make(chan discovery.Snapshot)
	go func() {
		defer close(out)
		for snap := range in {
			c.m.m.Members(len(snap.Members))
			select {
			case out <- snap:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// metricsTLS is the API's mutual TLS for the metrics listener: HTTP/1.1,
// a client certificate of the cluster's CA required.
func metricsTLS(id *pki.Identity) *tls.Config {
	api := id.ServerConfig()
	return &tls.Config{
		MinVersion: api.MinVersion,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := api.GetConfigForClient(h)
			if err != nil {
				return nil, err
			}
			c = c.Clone()
			c.NextProtos = []string{"http/1.1"}
			return c, nil
		},
	}
}

// adminOnly lets a dashboard request act when its client certificate
// names the admin role.
func adminOnly(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	role, err := pki.RoleOf(r.TLS.PeerCertificates[0])
	if err != nil {
		return err
	}
	if role != pki.RoleAdmin {
		return fmt.Errorf("the certificate's role is %s, not admin", role)
	}
	return nil
}
