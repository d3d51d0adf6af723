package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// BenchmarkEnqueue: one Enqueue call of 2,048 new jobs spread over P
// partitions, so each partition's script call carries 2048/P jobs, against a
// real redis-server. redis-µs/job is the CPU redis-server spent per job
// (INFO cpu), the figure that bounds a cluster's ingest.
func BenchmarkEnqueue(b *testing.B) {
	for _, parts := range []int{256, 64, 16, 1} {
		b.Run(fmt.Sprintf("jobs-per-partition=%d", 2048/parts), func(b *testing.B) {
			s := setup(b)
			ctx := context.Background()
			const n = 2048
			payload := []byte(`{"amount_cents":12345,"campaign":"campaign-007"}`)
			round := 0
			cpu0 := redisCPU(b, s.Client())
			b.ReportAllocs()
			for b.Loop() {
				jobs := make([]store.Job, n)
				for i := range jobs {
					key := "donor-" + strconv.Itoa(i%1000)
					jobs[i] = store.Job{ID: "don-" + strconv.Itoa(round) + "-" + strconv.Itoa(i), Handler: "donor.donate", Key: key,
						Payload: payload, Attempt: 1, SubmittedAt: 1, Partition: sharding.PartitionOf(key, parts)}
				}
				round++
				if _, err := s.Enqueue(ctx, jobs); err != nil {
					b.Fatal(err)
				}
			}
			jobs := float64(b.N * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/jobs, "ns/job")
			b.ReportMetric((redisCPU(b, s.Client())-cpu0)*1e6/jobs, "redis-µs/job")
		})
	}
}

// redisCPU is the CPU seconds redis-server has used.
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}
