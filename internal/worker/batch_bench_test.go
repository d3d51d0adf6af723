package worker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// BenchmarkPlanAndBuildBatch: the worker's own work on a 256-job partition
// batch of donations (200 donors), from the read to the commit's batch,
// with the tracing hooks of processPartition as they run with tracing off.
func BenchmarkPlanAndBuildBatch(b *testing.B) { benchPlanAndBuild(b, nil) }

// BenchmarkPlanAndBuildBatchTraced is the same with tracing on: three
// spans per job, exported (and dropped) in the background.
func BenchmarkPlanAndBuildBatchTraced(b *testing.B) {
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tr, err := tracing.FromEnv(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	benchPlanAndBuild(b, tr)
}

func benchPlanAndBuild(b *testing.B, tr *tracing.Tracer) {
	stream := make([]store.Job, 256)
	out := make(map[string]*pluginpb.Outcome, len(stream))
	for i := range stream {
		id := "don-" + strconv.Itoa(i)
		stream[i] = store.Job{ID: id, Handler: "donor.donate", Key: "donor-" + strconv.Itoa(i%200), Attempt: 1,
			Payload: []byte(`{"amount_cents":1234,"campaign":"campaign-007"}`), StreamID: strconv.Itoa(1000+i) + "-0"}
		if tr != nil {
			stream[i].Trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		}
		out[id] = &pluginpb.Outcome{JobId: id, Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte(`{"total_cents":1234,"count":1}`),
			Emits: []*pluginpb.Emit{{Handler: "campaign.credit", Key: "campaign-007", Payload: []byte(`{"amount_cents":1234}`)}}}
	}
	snap := store.Snapshot{States: map[store.EntityRef][]byte{}, Finished: map[string]bool{}, Held: map[string]bool{}}
	rp := retryPolicy{maxAttempts: func(store.Job) int { return 5 }, base: time.Second, max: time.Minute, now: time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		wk := planWork(nil, stream, snap)
		jobs := wk.runnable()
		bt := startBatchTrace(ctx, tr, 3, jobs)
		req := buildRequest(jobs, snap, plugins.EntityType)
		endSpans(bt.startPlugin(req), nil)
		batch, err := buildBatch(wk, out, rp, plugins.EntityType)
		if err != nil {
			b.Fatal(err)
		}
		bt.emits(batch)
		endSpans(bt.startCommit(3), nil)
		bt.end(out, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(stream)), "ns/job")
}
