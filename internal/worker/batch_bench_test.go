package worker

import (
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// BenchmarkPlanAndBuildBatch: the worker's own work on a 256-job partition
// batch of donations (200 donors), from the read to the commit's batch.
func BenchmarkPlanAndBuildBatch(b *testing.B) {
	stream := make([]store.Job, 256)
	out := make(map[string]*pluginpb.Outcome, len(stream))
	for i := range stream {
		id := "don-" + strconv.Itoa(i)
		stream[i] = store.Job{ID: id, Handler: "donor.donate", Key: "donor-" + strconv.Itoa(i%200), Attempt: 1,
			Payload: []byte(`{"amount_cents":1234,"campaign":"campaign-007"}`), StreamID: strconv.Itoa(1000+i) + "-0"}
		out[id] = &pluginpb.Outcome{JobId: id, Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte(`{"total_cents":1234,"count":1}`),
			Emits: []*pluginpb.Emit{{Handler: "campaign.credit", Key: "campaign-007", Payload: []byte(`{"amount_cents":1234}`)}}}
	}
	snap := store.Snapshot{States: map[store.EntityRef][]byte{}, Finished: map[string]bool{}, Held: map[string]bool{}}
	rp := retryPolicy{maxAttempts: func(store.Job) int { return 5 }, base: time.Second, max: time.Minute, now: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		wk := planWork(nil, stream, snap)
		_ = buildRequest(wk.runnable(), snap, plugins.EntityType)
		if _, err := buildBatch(wk, out, rp, plugins.EntityType); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(stream)), "ns/job")
}
