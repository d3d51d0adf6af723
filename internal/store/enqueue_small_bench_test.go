package store_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// BenchmarkEnqueueSmall: submissions of 50 jobs over 64 partitions, as a
// steady stream of small Submit calls sends them.
func BenchmarkEnqueueSmall(b *testing.B) {
	rdb := testenv.StartRedis(b).Client(b)
	cfg := store.DefaultConfig()
	s := store.New(rdb, cfg)
	ctx := context.Background()
	if err := s.EnsurePartitions(ctx); err != nil {
		b.Fatal(err)
	}
	const n = 50
	payload := []byte(`{"amount_cents":12345,"campaign":"campaign-007"}`)
	round := 0
	cpu0 := redisCPU(b, rdb)
	for b.Loop() {
		jobs := make([]store.Job, n)
		for i := range jobs {
			key := "donor-" + strconv.Itoa((round*n+i)%30000)
			jobs[i] = store.Job{ID: "don-" + strconv.Itoa(round) + "-" + strconv.Itoa(i), Handler: "donor.donate", Key: key,
				Payload: payload, Attempt: 1, SubmittedAt: 1, Partition: sharding.PartitionOf(key, cfg.Partitions)}
		}
		round++
		if _, err := s.Enqueue(ctx, jobs); err != nil {
			b.Fatal(err)
		}
	}
	jobs := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/jobs, "ns/job")
	b.ReportMetric((redisCPU(b, rdb)-cpu0)*1e6/jobs, "redis-µs/job")
}
