package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// BenchmarkSplitPartition splits one partition holding -states donors'
// states (committed by the commit script, 1,000 per batch) into 4, and
// reports the time per state moved: the copy part of a partition's pause
// during coordinator reshard (its queue's drain comes on top).
//
//	go test -run '^$' -bench SplitPartition -benchtime 1x ./internal/store
func BenchmarkSplitPartition(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("states=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ctx := context.Background()
				rdb := testenv.StartRedis(b).Client(b)
				s, routes := layoutStore(b, rdb)
				const p = 1
				grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
				if err != nil {
					b.Fatal(err)
				}
				var ws []store.StateWrite
				for k := 0; len(ws) < n; k++ {
					key := fmt.Sprintf("donor-%d", k)
					if sharding.PartitionOf(key, 4) != p {
						continue
					}
					ws = append(ws, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: key},
						Value: []byte(`{"total_cents":123456,"count":12,"zakat_cents":3086}`)})
				}
				for len(ws) > 0 {
					chunk := ws[:min(len(ws), 1000)]
					ws = ws[len(chunk):]
					if err := s.CommitBatch(ctx, p, grant, &store.Batch{States: chunk}); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := s.StartReshard(ctx, 16); err != nil {
					b.Fatal(err)
				}
				v, _ := s.Layout(ctx)
				routes.Store(v)
				if _, err := s.FreezeForSplit(ctx, p, grant, 16); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				st, err := s.SplitPartition(ctx, p, grant, 16)
				took := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(took.Microseconds())/float64(st.States), "µs/state")
				b.ReportMetric(float64(st.States), "states-moved")
				b.ReportMetric(float64(took.Milliseconds()), "ms/split")
			}
		})
	}
}
