package store_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// BenchmarkCommitDonations commits partition batches shaped like the
// donations bench's (audit off, as by default): 256 donations of 2,000
// donors, each done with a result, its donor's state and one emitted
// credit. Reported per job:
//
//	redis-µs/job   Redis's own time in the commit script (EVALSHA's
//	               usec in INFO commandstats, its commands included)
//	redis-cpu-µs/job  Redis's main thread CPU time over the commit
//	               (INFO cpu), which a busy machine sways less
//	layout-ns/job  the worker's time to lay the commit out and send it,
//	               less Redis's (wall time of CommitBatch minus the above)
//
// The jobs are enqueued, read and loaded outside the timed part.
// CORRAL_BENCH_REDIS=host:port runs it against that Redis instead (emptied
// first), e.g. one under valgrind --tool=callgrind, whose instruction
// counts a busy machine does not sway; CORRAL_BENCH_NO_COMMIT=1 leaves
// the commits out, to tell the rest's share.
func BenchmarkCommitDonations(b *testing.B) {
	if testing.Short() {
		b.Skip("needs redis-server")
	}
	rdb := benchRedis(b)
	cfg := store.DefaultConfig()
	cfg.Partitions = 8
	s := store.New(rdb, cfg)
	ctx := context.Background()
	if err := s.EnsurePartitions(ctx); err != nil {
		b.Fatal(err)
	}
	p := 1
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		b.Fatal(err)
	}
	const n = 256
	cursor, round := store.StartID, 0
	var redisUsec, redisCPU float64
	noCommit := os.Getenv("CORRAL_BENCH_NO_COMMIT") != ""
	var wall time.Duration
	jobs := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		batchJobs := make([]store.Job, n)
		for i := range batchJobs {
			key := "donor-" + strconv.Itoa((round*n+i)%2000)
			batchJobs[i] = store.Job{ID: "d" + strconv.Itoa(round) + "-" + strconv.Itoa(i), Handler: "donor.donate", Key: key,
				Payload: []byte(`{"amount_cents":1234,"campaign":"c7"}`), Attempt: 1, Partition: p, SubmittedAt: time.Now().UnixMilli()}
		}
		round++
		if _, err := s.Enqueue(ctx, batchJobs); err != nil {
			b.Fatal(err)
		}
		read, err := s.Read(ctx, map[int]string{p: cursor}, n, time.Millisecond)
		if err != nil || len(read[p]) != n {
			b.Fatalf("read %d jobs, %v", len(read[p]), err)
		}
		got := read[p]
		snap, err := s.LoadOptimistic(ctx, p, got, func(string) string { return "donor" })
		if err != nil {
			b.Fatal(err)
		}
		batch := &store.Batch{Attempts: map[string]int{}, Jobs: got}
		seen := map[string]bool{}
		for _, j := range got {
			batch.Done = append(batch.Done, j.ID)
			batch.Acked = append(batch.Acked, j.StreamID)
			batch.Results = append(batch.Results, store.Result{JobID: j.ID, Value: []byte(`{"total_cents":123456,"donations":12}`)})
			ref := store.EntityRef{Type: "donor", Key: j.Key}
			if !seen[j.Key] {
				seen[j.Key] = true
				batch.States = append(batch.States, store.StateWrite{Entity: ref, Value: []byte(`{"total_cents":123456,"donations":12}`),
					Existed: snap.States[ref] != nil})
			}
			batch.StateSteps = append(batch.StateSteps, store.StateWrite{Entity: ref, Value: []byte(`{"total_cents":123456,"donations":12}`)})
			batch.Emits = append(batch.Emits, store.Job{ID: store.EmittedID(j.ID, 0), Handler: "campaign.credit", Key: "c7",
				Payload: []byte(`{"amount_cents":1234,"donor":"` + j.Key + `"}`)})
		}
		before, cpuBefore := evalUsec(b, rdb), mainThreadCPU(b, rdb)
		b.StartTimer()
		t0 := time.Now()
		if !noCommit {
			if err := s.CommitBatch(ctx, p, grant, batch); err != nil {
				b.Fatal(err)
			}
		}
		wall += time.Since(t0)
		b.StopTimer()
		redisUsec += evalUsec(b, rdb) - before
		redisCPU += mainThreadCPU(b, rdb) - cpuBefore
		b.StartTimer()
		jobs += n
		cursor = got[n-1].StreamID
	}
	b.ReportMetric(redisUsec/float64(jobs), "redis-µs/job")
	b.ReportMetric(redisCPU*1e6/float64(jobs), "redis-cpu-µs/job")
	b.ReportMetric((float64(wall.Nanoseconds())-redisUsec*1e3)/float64(jobs), "layout-ns/job")
}

// benchRedis is a Redis of the benchmark's own, or CORRAL_BENCH_REDIS's.
func benchRedis(b *testing.B) *redis.Client {
	addr := os.Getenv("CORRAL_BENCH_REDIS")
	if addr == "" {
		return testenv.StartRedis(b).Client(b)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	b.Cleanup(func() { rdb.Close() })
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
	return rdb
}

// evalUsec is the time Redis spent in EVALSHA so far, µs.
func evalUsec(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if !strings.HasPrefix(l, "cmdstat_evalsha:") {
			continue
		}
		for _, f := range strings.Split(strings.TrimSpace(strings.TrimPrefix(l, "cmdstat_evalsha:")), ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				u, _ := strconv.ParseFloat(v, 64)
				return u
			}
		}
	}
	return 0
}

// mainThreadCPU is the CPU time of Redis's main thread so far, seconds.
func mainThreadCPU(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var s float64
	for _, l := range strings.Split(info, "\n") {
		name, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		if name == "used_cpu_user_main_thread" || name == "used_cpu_sys_main_thread" {
			f, _ := strconv.ParseFloat(v, 64)
			s += f
		}
	}
	return s
}
