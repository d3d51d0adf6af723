package store_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// BenchmarkFinishedRetention measures what it costs Redis to let finished
// records go once the done retention (1 s here) is over. Each iteration
// commits 40 batches of 256 jobs (done, with a result), then, by
// CORRAL_BENCH_AFTER:
//
//	sweep   waits 3 s and sweeps them (SweepFinished), as the owner does
//	expire  gives every record an EXPIRE of 1 s (pipelined, as the commit
//	        did before) and waits 3 s while Redis expires them
//	ttl     the same with an EXPIRE of an hour, so none expires
//	wait    waits 3 s
//	(none)  nothing more
//
// It reports Redis's main-thread CPU per record over what follows the
// commits (after-cpu-µs/record), this process's (self-cpu-µs/record: the
// worker's side of a sweep, or of the pipelined EXPIREs) and the records
// left. Run against a Redis
// under callgrind (CORRAL_BENCH_REDIS), the instruction counts of the
// modes tell the costs apart: sweep less wait is the sweep's, expire less
// expire less ttl the expiries' (each EXPIRE's own cost, in a commit, is
// BenchmarkCommitDonations's to tell).
func BenchmarkFinishedRetention(b *testing.B) {
	if testing.Short() {
		b.Skip("needs redis-server")
	}
	after := os.Getenv("CORRAL_BENCH_AFTER")
	rdb := benchRedis(b)
	cfg := store.DefaultConfig()
	cfg.Partitions = 8
	cfg.DoneRetention, cfg.ResultRetention = time.Second, time.Second
	s := store.New(rdb, cfg)
	ctx := context.Background()
	if err := s.EnsurePartitions(ctx); err != nil {
		b.Fatal(err)
	}
	p := 1
	k := keys.For(p)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		b.Fatal(err)
	}
	const n, batches = 256, 40
	var records, left int
	var cpu, self float64
	round := 0
	for b.Loop() {
		b.StopTimer()
		cursor := store.StartID
		var ids []string
		for range batches {
			jobs := make([]store.Job, n)
			for i := range jobs {
				jobs[i] = store.Job{ID: "j" + strconv.Itoa(round) + "-" + strconv.Itoa(i), Handler: "donor.donate",
					Key: "donor-" + strconv.Itoa(i%2000), Payload: []byte(`{"amount_cents":1234}`), Attempt: 1, Partition: p}
			}
			round++
			if _, err := s.Enqueue(ctx, jobs); err != nil {
				b.Fatal(err)
			}
			read, err := s.Read(ctx, map[int]string{p: cursor}, n, time.Millisecond)
			if err != nil || len(read[p]) != n {
				b.Fatalf("read %d jobs, %v", len(read[p]), err)
			}
			batch := &store.Batch{Jobs: read[p], Attempts: map[string]int{}}
			for _, j := range read[p] {
				batch.Done = append(batch.Done, j.ID)
				batch.Acked = append(batch.Acked, j.StreamID)
				batch.Results = append(batch.Results, store.Result{JobID: j.ID, Value: []byte(`{"total_cents":123456,"donations":12}`)})
				ids = append(ids, j.ID)
			}
			if err := s.CommitBatch(ctx, p, grant, batch); err != nil {
				b.Fatal(err)
			}
			cursor = read[p][n-1].StreamID
		}
		records += len(ids)
		cpuBefore, selfBefore := mainThreadCPU(b, rdb), selfCPU()
		b.StartTimer()
		// The 3 s are a fixed window, the same in every mode, so the
		// modes' idle costs cancel out: not a wait for something.
		switch after {
		case "expire", "ttl":
			ttl := time.Second
			if after == "ttl" {
				ttl = time.Hour
			}
			pipe := rdb.Pipeline()
			for _, id := range ids {
				pipe.Expire(ctx, k.Job(id), ttl)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			time.Sleep(3 * time.Second)
		case "sweep":
			time.Sleep(3 * time.Second)
			if _, err := s.SweepFinished(ctx, []int{p}); err != nil {
				b.Fatal(err)
			}
		case "wait":
			time.Sleep(3 * time.Second)
		}
		b.StopTimer()
		cpu += mainThreadCPU(b, rdb) - cpuBefore
		self += selfCPU() - selfBefore
		pipe := rdb.Pipeline()
		cmds := make([]interface{ Val() int64 }, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.Exists(ctx, k.Job(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		for _, c := range cmds {
			left += int(c.Val())
		}
		b.StartTimer()
	}
	b.ReportMetric(cpu*1e6/float64(records), "after-cpu-µs/record")
	b.ReportMetric(self*1e6/float64(records), "self-cpu-µs/record")
	b.ReportMetric(float64(left), "records-left")
}

// selfCPU is this process's CPU time so far, seconds: the worker's side of
// a sweep (reading the entries, naming their jobs) runs here.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
