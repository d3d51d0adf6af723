package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// BenchmarkCommitStateWatch: what entity watches cost a 256-job commit
// that writes 200 states, against a real redis-server: "off" as before
// watches (no state steps), "unwatched" with the steps and nobody
// watching (the cost every commit pays), "watched" with each of the 200
// entities watched (each state published).
//
//	go test ./internal/store -run '^$' -bench CommitStateWatch
func BenchmarkCommitStateWatch(b *testing.B) {
	for _, mode := range []string{"off", "unwatched", "watched"} {
		b.Run(mode, func(b *testing.B) {
			s := setup(b)
			ctx := context.Background()
			const p, n = 1, 256
			g, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
			if err != nil {
				b.Fatal(err)
			}
			if mode == "watched" {
				for i := range 200 {
					if err := s.Watch(ctx, p, "donor", "donor-"+strconv.Itoa(i), time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			}
			cursor, round := store.StartID, 0
			var commit time.Duration
			for b.Loop() {
				jobs := make([]store.Job, n)
				for i := range jobs {
					jobs[i] = job("r"+strconv.Itoa(round)+"-"+strconv.Itoa(i), "donor-"+strconv.Itoa(i%200), p)
				}
				round++
				if _, err := s.Enqueue(ctx, jobs); err != nil {
					b.Fatal(err)
				}
				read, err := s.Read(ctx, map[int]string{p: cursor}, n, time.Millisecond)
				if err != nil || len(read[p]) != n {
					b.Fatalf("read %d jobs, %v", len(read[p]), err)
				}
				batch := &store.Batch{Attempts: map[string]int{}}
				for i, j := range read[p] {
					batch.Done = append(batch.Done, j.ID)
					batch.Acked = append(batch.Acked, j.StreamID)
					if i < 200 {
						w := store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: j.Key}, Value: []byte(`{"total_cents":1,"count":1}`)}
						batch.States = append(batch.States, w)
						if mode != "off" {
							batch.StateSteps = append(batch.StateSteps, w)
						}
					}
				}
				start := time.Now()
				if err := s.CommitBatch(ctx, p, g, batch); err != nil {
					b.Fatal(err)
				}
				commit += time.Since(start)
				cursor = read[p][n-1].StreamID
			}
			b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N*n), "commit-ns/job")
		})
	}
}
