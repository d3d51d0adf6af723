package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// BenchmarkMemoryPerJob prints Redis's used_memory per job: queued, and
// finished and remembered for the dedup window. It runs the donations
// workload through the store the way the workers do (enqueue, read,
// commit with state, result and the emitted credit, relay, commit the
// credits), with the real scripts, in one process:
//
//	go test -run '^$' -bench MemoryPerJob -benchtime 1x ./internal/store
//
// BENCH_DONATIONS changes the count (default 100,000).
func BenchmarkMemoryPerJob(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(envOr("BENCH_DONATIONS", "")); err == nil {
		n = v
	}
	for i := 0; i < b.N; i++ {
		measureMemory(b, n)
	}
}

func envOr(k, def string) string {
	if v := strings.TrimSpace(os.Getenv(k)); v != "" {
		return v
	}
	return def
}

func measureMemory(b *testing.B, n int) {
	ctx := context.Background()
	rdb := testenv.StartRedis(b).Client(b)
	const P = 64
	cfg := store.DefaultConfig()
	cfg.Partitions = P
	s := store.New(rdb, cfg)
	if err := s.EnsurePartitions(ctx); err != nil {
		b.Fatal(err)
	}
	partitionOf := func(k string) int { return sharding.PartitionOf(k, P) }
	used := func() int64 {
		info := rdb.Info(ctx, "memory").Val()
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
				x, _ := strconv.ParseInt(v, 10, 64)
				return x
			}
		}
		b.Fatal("no used_memory in INFO memory")
		return 0
	}
	epochs := map[int]lease.Grant{}
	for p := 0; p < P; p++ {
		e, err := lease.Claim(ctx, rdb, p, "w~1", "")
		if err != nil {
			b.Fatal(err)
		}
		epochs[p] = e
	}
	pbs, _ := workload.Generate(workload.Spec{Seed: 1, Donations: n, Donors: n / 10, Campaigns: 50})
	m0 := used()

	jobs := make([]store.Job, len(pbs))
	for i, j := range pbs {
		jobs[i] = store.Job{ID: j.Id, Handler: j.Handler, Key: j.Key, Payload: j.Payload, Attempt: 1,
			Partition: partitionOf(j.Key), SubmittedAt: time.Now().UnixMilli()}
	}
	for i := 0; i < len(jobs); i += 10_000 {
		if _, err := s.Enqueue(ctx, jobs[i:min(i+10_000, len(jobs))]); err != nil {
			b.Fatal(err)
		}
	}
	m1 := used()

	donors := map[string]ledger.DonorState{}
	campaigns := map[string]ledger.CampaignState{}
	// drain commits every queued job of every partition, as an owner would.
	drain := func() int {
		done := 0
		for p := 0; p < P; p++ {
			for {
				read, err := s.Read(ctx, map[int]string{p: store.StartID}, 256, time.Millisecond)
				if err != nil {
					b.Fatal(err)
				}
				js := read[p]
				if len(js) == 0 {
					break
				}
				batch := &store.Batch{Jobs: js}
				for _, j := range js {
					batch.Done = append(batch.Done, j.ID)
					batch.Acked = append(batch.Acked, j.StreamID)
					switch j.Handler {
					case ledger.HandlerDonate:
						var d ledger.Donation
						_ = json.Unmarshal(j.Payload, &d)
						st := donors[j.Key].Apply(d)
						donors[j.Key] = st
						v, _ := json.Marshal(st)
						batch.States = append(batch.States, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: j.Key}, Value: v})
						batch.Results = append(batch.Results, store.Result{JobID: j.ID, Value: v})
						c, _ := json.Marshal(ledger.Credit{AmountCents: d.AmountCents, Donor: j.Key})
						batch.Emits = append(batch.Emits, store.Job{ID: j.ID + "/0", Handler: ledger.HandlerCredit, Key: d.Campaign, Payload: c})
					case ledger.HandlerCredit:
						var c ledger.Credit
						_ = json.Unmarshal(j.Payload, &c)
						st := campaigns[j.Key].Apply(c)
						campaigns[j.Key] = st
						v, _ := json.Marshal(st)
						batch.States = append(batch.States, store.StateWrite{Entity: store.EntityRef{Type: "campaign", Key: j.Key}, Value: v})
					}
				}
				if err := s.CommitBatch(ctx, p, epochs[p], batch); err != nil {
					b.Fatal(err)
				}
				done += len(js)
			}
		}
		return done
	}
	relay := func() {
		for p := 0; p < P; p++ {
			for {
				moved, err := relay(ctx, s, p, 64, partitionOf)
				if err != nil {
					b.Fatal(err)
				}
				if moved == 0 {
					break
				}
			}
		}
	}
	if got := drain(); got != n {
		b.Fatalf("committed %d donations, want %d", got, n)
	}
	m2 := used()
	relay()
	m3 := used()
	if got := drain(); got != n {
		b.Fatalf("committed %d credits, want %d", got, n)
	}
	m4 := used()

	count := func(pattern string) (keys int, bytes int64) {
		var cursor uint64
		for {
			ks, next, err := rdb.Scan(ctx, cursor, pattern, 10_000).Result()
			if err != nil {
				b.Fatal(err)
			}
			for _, k := range ks {
				keys++
				bytes += rdb.MemoryUsage(ctx, k).Val()
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	}
	recN, recB := count("corral:*:job:*")
	creditN, creditB := count("corral:*:job:*/0")
	markN, markB := count("corral:*:relayed:*")
	stN, stB := count("corral:*:st:*")
	per := func(bytes int64, jobs int) string { return fmt.Sprintf("%d B", bytes/int64(max(jobs, 1))) }
	b.Logf("Redis used_memory, %d donations over %d partitions (%d donors, 50 campaigns):", n, P, n/10)
	b.Logf("  empty cluster                          %11d B", m0)
	b.Logf("  %d donations queued                %11d B  %s per queued job", n, m1, per(m1-m0, n))
	b.Logf("  donations done, credits in outboxes    %11d B", m2)
	b.Logf("  credits relayed (queued)               %11d B", m3)
	b.Logf("  all %d jobs done                   %11d B  %s per finished job, states included", 2*n, m4, per(m4-m0, 2*n))
	b.Logf("  MEMORY USAGE: %d job records %s each (donation, result kept: %s; credit, no result: %s)",
		recN, per(recB, recN), per(recB-creditB, recN-creditN), per(creditB, creditN))
	b.Logf("  MEMORY USAGE: %d relay marks %s each (%.2f per job), %d entity states %s each",
		markN, per(markB, markN), float64(markN)/float64(2*n), stN, per(stB, stN))
	b.ReportMetric(float64(m1-m0)/float64(n), "B/queued-job")
	b.ReportMetric(float64(m4-m0)/float64(2*n), "B/finished-job")
}
