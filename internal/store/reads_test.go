package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// TestReadsForObservers: what the audit oracle and the benchmark read goes
// through the store: the audit log with its grant and ids, a partition's
// backlog by where it waits, and whether jobs are done.
func TestReadsForObservers(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	const p = 3
	if _, err := s.Enqueue(ctx, []store.Job{job("j1", "k1", p), job("j2", "k2", p), job("j3", "k3", p)}); err != nil {
		t.Fatal(err)
	}
	b, err := s.Backlogs(ctx, []int{p, p + 1})
	if err != nil || b[p] != (store.Backlog{Queued: 3}) || b[p+1] != (store.Backlog{}) {
		t.Fatalf("backlogs after enqueue: %+v %v; want 3 queued in %d, nothing in %d", b, err, p, p+1)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 3 {
		t.Fatalf("read: %v %v", read, err)
	}
	g, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	batch := &store.Batch{Done: []string{"j1", "j2"}, Acked: []string{read[p][0].StreamID, read[p][1].StreamID}}
	if err := s.CommitBatch(ctx, p, g, batch); err != nil {
		t.Fatal(err)
	}
	b, err = s.Backlogs(ctx, []int{p})
	if err != nil || b[p].Queued != 1 || b[p].Depth() != 1 {
		t.Fatalf("backlog after commit: %+v %v; want 1 queued", b[p], err)
	}
	done, err := s.Done(ctx, []string{"j1", "j2", "j3", "j1", "nope"}, []int{p, p, p, p + 1, p})
	if want := []bool{true, true, false, false, false}; err != nil || !reflect.DeepEqual(done, want) {
		t.Fatalf("done: %v %v; want %v", done, err, want)
	}
	es, trimmed, err := s.AuditLog(ctx, p, time.Time{})
	if err != nil || trimmed != 0 || len(es) != 2 {
		t.Fatalf("audit log: %+v, %d trimmed, %v; want two entries, none trimmed", es, trimmed, err)
	}
	for i, e := range es {
		if e.Grant != g || e.JobID != batch.Done[i] || e.At.Before(start.Add(-time.Second)) {
			t.Errorf("audit entry %d: %+v; want job %s under %+v, at or after %v", i, e, batch.Done[i], g, start)
		}
	}
	if es, _, err := s.AuditLog(ctx, p, es[1].At.Add(time.Millisecond)); err != nil || len(es) != 0 {
		t.Fatalf("audit log since after the last commit: %+v %v; want none", es, err)
	}
}
