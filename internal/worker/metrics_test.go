package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/store"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestObserveBatch: a batch's failed attempts are its retries and its
// dead letters, per handler, and each done job's wait since submission
// (since its not-before time, for a delayed one) is observed once.
func TestObserveBatch(t *testing.T) {
	t.Parallel()
	m := &workerMetrics{m: metrics.NewWorker("w1", metrics.Source{})}
	now := time.Now()
	jobs := []store.Job{
		{ID: "a", Handler: "donor.donate", SubmittedAt: now.Add(-2 * time.Second).UnixMilli()},
		{ID: "b", Handler: "donor.donate", SubmittedAt: now.Add(-time.Hour).UnixMilli(), NotBefore: now.Add(-20 * time.Millisecond).UnixMilli()},
		{ID: "c", Handler: "donor.donate"},
		{ID: "d", Handler: "campaign.credit"},
	}
	m.observeBatch(jobs, &store.Batch{
		Done:    []string{"a", "b"},
		Retries: []store.Job{jobs[2]},
		Dead:    []store.DeadJob{{Job: jobs[3], Error: "boom"}},
	})
	want := `
# HELP corral_jobs_failed_total Failed attempts (the plugin answered retry or fail, crashed or timed out), per handler; each is retried or dead-lettered.
# TYPE corral_jobs_failed_total counter
corral_jobs_failed_total{handler="campaign.credit"} 1
corral_jobs_failed_total{handler="donor.donate"} 1
`
	if err := testutil.GatherAndCompare(m.m.Registry(), strings.NewReader(want), "corral_jobs_failed_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := m.m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "corral_submit_to_commit_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		// a waited 2 s, b 20 ms since it fell due (not the hour since its submission).
		if h.GetSampleCount() != 2 || h.GetSampleSum() < 2 || h.GetSampleSum() > 3 {
			t.Fatalf("submit to commit: %d samples summing %.3f s, want 2 summing about 2.02 s", h.GetSampleCount(), h.GetSampleSum())
		}
		return
	}
	t.Fatal("no corral_submit_to_commit_seconds")
}
