package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// TestEnqueueManyOfOnePartitionKeepsOrder: a submission with more jobs of
// one partition than one script call takes goes out in several pipelines,
// one call per partition in each, and lands in submission order, also
// when Redis has lost its scripts.
func TestEnqueueManyOfOnePartitionKeepsOrder(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	if err := s.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	p := 6
	var js []store.Job
	for i := range 1300 {
		js = append(js, job("o"+strconv.Itoa(i), "k", p), job("x"+strconv.Itoa(i), "other", p+1))
	}
	res, err := s.Enqueue(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("job %s: %+v", js[i].ID, r)
		}
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 2000, time.Millisecond)
	if err != nil || len(read[p]) != 1300 {
		t.Fatalf("read %d jobs, %v", len(read[p]), err)
	}
	for i, j := range read[p] {
		if j.ID != "o"+strconv.Itoa(i) {
			t.Fatalf("entry %d is %s, want o%d", i, j.ID, i)
		}
	}
}
