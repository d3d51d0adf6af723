package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// BenchmarkEnqueueAndCommit: a 256-job partition batch enqueued, read,
// loaded and committed (states, emits, acks; audit on, as in every store
// test) against a real redis-server, as the worker's job path does it.
// ns/job is the cost per job of the Redis round trips and scripts.
func BenchmarkEnqueueAndCommit(b *testing.B) {
	enqueueAndCommit(b, setup(b))
}

func enqueueAndCommit(b *testing.B, s *store.Store) {
	ctx := context.Background()
	p := 1
	epoch, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		b.Fatal(err)
	}
	const n = 256
	cursor := store.StartID
	round := 0
	b.ReportAllocs()
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
		got := read[p]
		if _, err := s.LoadOptimistic(ctx, p, got, func(string) string { return "donor" }); err != nil {
			b.Fatal(err)
		}
		batch := &store.Batch{Attempts: map[string]int{}, Jobs: got}
		for i, j := range got {
			batch.Done = append(batch.Done, j.ID)
			batch.Acked = append(batch.Acked, j.StreamID)
			if i < 200 {
				batch.States = append(batch.States, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: j.Key}, Value: []byte(`{"total_cents":1}`)})
			}
			batch.Emits = append(batch.Emits, store.Job{ID: store.EmittedID(j.ID, 0), Handler: "campaign.credit", Key: "c", Payload: []byte(`{}`)})
		}
		if err := s.CommitBatch(ctx, p, epoch, batch); err != nil {
			b.Fatal(err)
		}
		cursor = got[n-1].StreamID
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/job")
}
