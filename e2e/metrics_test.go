package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestMetricsMoveAsJobsCommit finds a worker's /metrics address in its
// Consul service meta, scrapes it, runs donations through, and checks the
// counters moved by exactly what was committed.
func TestMetricsMoveAsJobsCommit(t *testing.T) {
	c := newCluster(t, "--metrics", "127.0.0.1:0")
	c.start("w1")

	entries, _, err := c.consul.Client(t).Health().Service(discovery.DefaultService, "", true, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("healthy %s services: %d, err %v", discovery.DefaultService, len(entries), err)
	}
	svc := entries[0].Service
	addr := svc.Meta["metrics"]
	if addr == "" || svc.Meta["version"] == "" || !contains(svc.Tags, "metrics") {
		t.Fatalf("service meta %v tags %v: want metrics address, version and the metrics tag", svc.Meta, svc.Tags)
	}
	// Healthy in Consul comes a moment before the worker has claimed its
	// partitions; wait for the claims to show.
	var before map[string]float64
	testenv.Eventually(t, 30*time.Second, func() error {
		before = scrape(t, addr)
		if before[`corral_partitions_owned`] != 64 || before[`corral_members`] != 1 {
			return fmt.Errorf("corral_partitions_owned = %v, corral_members = %v; want 64 and 1 (one worker owns every partition)",
				before[`corral_partitions_owned`], before[`corral_members`])
		}
		return nil
	})
	if _, ok := before[`corral_plugin_restarts_total`]; !ok {
		t.Errorf("corral_plugin_restarts_total missing: the plugin host's restart count is not wired")
	}
	if before[`corral_membership_changes_total`] < 1 {
		t.Errorf("corral_membership_changes_total = %v, want ≥1", before[`corral_membership_changes_total`])
	}

	const n = 300
	jobs, exp := workload.Generate(workload.Spec{Seed: 7, Donations: n, Donors: 40, Campaigns: 5})
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < len(jobs); i += 50 {
		submitWithRetry(ctx, t, cl, jobs[i:min(i+50, len(jobs))])
	}
	rep, err := workload.WaitFor(ctx, cl, exp)
	if err != nil || !rep.OK() {
		t.Fatalf("totals: %s err %v", rep, err)
	}

	after := scrape(t, addr)
	for _, h := range []string{"donor.donate", "campaign.credit"} {
		key := `corral_jobs_committed_total{handler="` + h + `"}`
		if d := after[key] - before[key]; d != n {
			t.Errorf("%s moved by %v, want %d", key, d, n)
		}
	}
	for _, k := range []string{"corral_commit_seconds_count", "corral_handler_call_seconds_count"} {
		if after[k] <= before[k] {
			t.Errorf("%s did not move: %v → %v", k, before[k], after[k])
		}
	}
	if after["corral_queue_lag_jobs"] != 0 {
		t.Errorf("corral_queue_lag_jobs = %v after every job committed, want 0", after["corral_queue_lag_jobs"])
	}
	if after["corral_commits_fenced_total"] != 0 || after["corral_partition_moves_total"] < 64 {
		t.Errorf("fenced %v, moves %v: want 0 and ≥64", after["corral_commits_fenced_total"], after["corral_partition_moves_total"])
	}
	if k := `corral_submit_to_commit_seconds_count{handler="donor.donate"}`; after[k]-before[k] != n {
		t.Errorf("%s moved by %v, want %d", k, after[k]-before[k], n)
	}
	for _, k := range []string{"corral_dead_letters", "corral_relay_backlog_entries", "corral_relay_lag_seconds"} {
		if v, ok := after[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v) after every job committed, want 0", k, v, ok)
		}
	}
	// One worker owns every key: a call runs directly.
	if _, err := cl.Call(ctx, &workerpb.Job{Handler: "donor.donate", Key: "metrics-caller", Payload: []byte(`{"amount_cents":1,"campaign":"c0"}`)}); err != nil {
		t.Fatalf("call: %v", err)
	}
	calls := scrape(t, addr)
	if k := `corral_calls_total{path="direct"}`; calls[k]-after[k] != 1 || calls[`corral_call_seconds_count{path="direct"}`] < 1 {
		t.Errorf("%s moved by %v after one call, want 1", k, calls[k]-after[k])
	}
	// The names and labels follow Prometheus's conventions, as promtool
	// check metrics says them.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(resp.Body).Lint()
	resp.Body.Close()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	if after["corral_lease_remaining_seconds"] <= 0 {
		t.Errorf("corral_lease_remaining_seconds = %v, want > 0 on a healthy worker", after["corral_lease_remaining_seconds"])
	}
	t.Logf("after %d donations: committed donor.donate %v, campaign.credit %v; %v commits, %v plugin calls",
		n, after[`corral_jobs_committed_total{handler="donor.donate"}`], after[`corral_jobs_committed_total{handler="campaign.credit"}`],
		after["corral_commit_seconds_count"], after["corral_handler_call_seconds_count"])
}

// scrape reads addr/metrics in the text format into "name{labels}" → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: line %q: %v", addr, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(fmt.Errorf("scrape %s: %w", addr, err))
	}
	return out
}
