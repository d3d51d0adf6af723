package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNamesAndValues(t *testing.T) {
	t.Parallel()
	m := metrics.NewWorker("w1", metrics.Source{
		Fenced:          func() int64 { return 2 },
		Moves:           func() int64 { return 7 },
		PartitionsOwned: func() int { return 21 },
		Backlog: func(context.Context) (metrics.Backlog, error) {
			return metrics.Backlog{Jobs: 42, Outbox: 3, OldestOutbox: time.Now().Add(-time.Hour), Dead: 4}, nil
		},
		LeaseRemaining: func() time.Duration { return 1500 * time.Millisecond },
		Breakers:       func() []metrics.PeerBreaker { return []metrics.PeerBreaker{{Peer: "10.0.0.2:7070", State: 2}} },
		PluginRestarts: func() int64 { return 1 },
	})
	m.Committed("donor.donate", 3)
	m.Retried("donor.donate", 1)
	m.DeadLettered("campaign.credit", 1)
	m.Rejected("stock.reserve", 2)
	m.ObserveCommit(3 * time.Millisecond)
	m.ObserveHandlerCall(time.Millisecond)
	m.Members(3)
	m.MembershipChanged()
	m.BroadcastRun("cache.invalidate", "ran")
	m.BroadcastRun("cache.invalidate", "ran")
	m.BroadcastRun("cache.invalidate", "already")
	m.Failed("donor.donate", 2)
	m.ObserveSubmitToCommit("donor.donate", 20*time.Millisecond)
	m.ObserveCall("direct", time.Millisecond)
	m.ObserveCall("fallback", time.Second)

	want := `
# HELP corral_broadcast_runs_total Broadcasts this worker was asked to run as a member, per handler and outcome: ran, already (ran under that id before) or failed.
# TYPE corral_broadcast_runs_total counter
corral_broadcast_runs_total{handler="cache.invalidate",outcome="already"} 1
corral_broadcast_runs_total{handler="cache.invalidate",outcome="ran"} 2
# HELP corral_commits_fenced_total Batch commits rejected because another worker holds a newer epoch.
# TYPE corral_commits_fenced_total counter
corral_commits_fenced_total 2
# HELP corral_jobs_committed_total Jobs applied by a fenced commit, per handler.
# TYPE corral_jobs_committed_total counter
corral_jobs_committed_total{handler="donor.donate"} 3
# HELP corral_jobs_dead_lettered_total Jobs moved to the dead-letter stream, per handler.
# TYPE corral_jobs_dead_lettered_total counter
corral_jobs_dead_lettered_total{handler="campaign.credit"} 1
# HELP corral_jobs_rejected_total Jobs their handler rejected (sdk.Reject), finished with a reason, per handler.
# TYPE corral_jobs_rejected_total counter
corral_jobs_rejected_total{handler="stock.reserve"} 2
# HELP corral_jobs_retried_total Jobs scheduled for another attempt, per handler.
# TYPE corral_jobs_retried_total counter
corral_jobs_retried_total{handler="donor.donate"} 1
# HELP corral_lease_remaining_seconds Time this worker still trusts its liveness lease; 0 means it stopped committing.
# TYPE corral_lease_remaining_seconds gauge
corral_lease_remaining_seconds 1.5
# HELP corral_members Healthy workers in the last membership snapshot.
# TYPE corral_members gauge
corral_members 3
# HELP corral_membership_changes_total Changes of the live members that rebuilt the ring (a snapshot naming the same members counts nothing).
# TYPE corral_membership_changes_total counter
corral_membership_changes_total 1
# HELP corral_partition_moves_total Partitions this worker claimed or released.
# TYPE corral_partition_moves_total counter
corral_partition_moves_total 7
# HELP corral_partitions_owned Partitions this worker holds a fencing epoch for.
# TYPE corral_partitions_owned gauge
corral_partitions_owned 21
# HELP corral_peer_breaker_state Circuit breaker state towards a peer worker: 0 closed, 1 half-open, 2 open.
# TYPE corral_peer_breaker_state gauge
corral_peer_breaker_state{peer="10.0.0.2:7070"} 2
# HELP corral_plugin_restarts_total Handler plugin processes relaunched after a crash.
# TYPE corral_plugin_restarts_total counter
corral_plugin_restarts_total 1
# HELP corral_queue_lag_jobs Jobs waiting in the partitions this worker owns (queues, delayed, parked and waiting jobs, and outboxes).
# TYPE corral_queue_lag_jobs gauge
corral_queue_lag_jobs 42
# HELP corral_relay_backlog_entries Outbox entries (each the jobs one commit emitted) of the partitions this worker owns not relayed yet.
# TYPE corral_relay_backlog_entries gauge
corral_relay_backlog_entries 3
# HELP corral_dead_letters Dead letters kept in the partitions this worker owns.
# TYPE corral_dead_letters gauge
corral_dead_letters 4
# HELP corral_jobs_failed_total Failed attempts (the plugin answered retry or fail, crashed or timed out), per handler; each is retried or dead-lettered.
# TYPE corral_jobs_failed_total counter
corral_jobs_failed_total{handler="donor.donate"} 2
# HELP corral_calls_total Synchronous calls this worker took from a client, per path: direct (it owns the key), forwarded (to the owner), fallback (the durable queue).
# TYPE corral_calls_total counter
corral_calls_total{path="direct"} 1
corral_calls_total{path="fallback"} 1
`
	names := []string{"corral_broadcast_runs_total", "corral_commits_fenced_total", "corral_jobs_committed_total", "corral_jobs_dead_lettered_total",
		"corral_jobs_rejected_total", "corral_jobs_retried_total", "corral_lease_remaining_seconds", "corral_members", "corral_membership_changes_total",
		"corral_partition_moves_total", "corral_partitions_owned", "corral_peer_breaker_state",
		"corral_plugin_restarts_total", "corral_queue_lag_jobs", "corral_relay_backlog_entries", "corral_dead_letters",
		"corral_jobs_failed_total", "corral_calls_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "corral_relay_lag_seconds"); err != nil || n != 1 {
		t.Fatalf("relay lag: %d series, err %v", n, err)
	}
	if v := gaugeValue(t, m, "corral_relay_lag_seconds"); v < 3599 || v > 3700 {
		t.Fatalf("relay lag %v s, want about an hour", v)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "corral_commit_seconds", "corral_handler_call_seconds", "corral_submit_to_commit_seconds", "corral_call_seconds"); err != nil || n != 5 {
		t.Fatalf("histograms: %d series, err %v", n, err)
	}
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

func TestLagErrorLeavesNoSample(t *testing.T) {
	t.Parallel()
	m := metrics.NewWorker("w1", metrics.Source{
		Backlog: func(context.Context) (metrics.Backlog, error) { return metrics.Backlog{}, errors.New("redis down") },
	})
	if n, _ := testutil.GatherAndCount(m.Registry(), "corral_queue_lag_jobs", "corral_dead_letters", "corral_relay_lag_seconds"); n != 0 {
		t.Fatalf("a lag that could not be read gave %d samples, want none", n)
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "corral_queue_lag_errors_total"); n != 1 {
		t.Fatalf("corral_queue_lag_errors_total missing")
	}
}

func TestServerServesMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.NewWorker("w1", metrics.Source{})
	m.Committed("donor.donate", 5)
	srv, err := metrics.Listen("127.0.0.1:0", m.Registry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Stop()
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `corral_jobs_committed_total{handler="donor.donate"} 5`) ||
		!strings.Contains(string(body), `corral_worker_info{worker="w1"} 1`) {
		t.Fatalf("/metrics lacks the committed counter or worker info:\n%s", body)
	}
	srv.Stop() // twice is fine
}

func TestAdvertiseAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ bound, host, want string }{
		{"0.0.0.0:9464", "10.0.1.21", "10.0.1.21:9464"},
		{"[::]:9464", "10.0.1.21", "10.0.1.21:9464"},
		{":9464", "10.0.1.21", "10.0.1.21:9464"},
		{"127.0.0.1:9464", "10.0.1.21", "127.0.0.1:9464"},
	} {
		if got := metrics.AdvertiseAddr(tc.bound, tc.host); got != tc.want {
			t.Errorf("AdvertiseAddr(%q, %q) = %q, want %q", tc.bound, tc.host, got, tc.want)
		}
	}
}

func gaugeValue(t *testing.T, m *metrics.Worker, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
