package store_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

// jobsInEveryState fills the 8 partitions of s with jobs in every state
// and returns the ids expected per state.
func jobsInEveryState(t *testing.T, s *store.Store) map[store.JobState][]string {
	t.Helper()
	ctx := context.Background()
	const P = 8
	pOf := func(key string) int { return sharding.PartitionOf(key, P) }
	grants := map[int]lease.Grant{}
	for p := 0; p < P; p++ {
		g, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
		if err != nil {
			t.Fatal(err)
		}
		grants[p] = g
	}
	want := map[store.JobState][]string{}
	mk := func(id, key string, i int) store.Job {
		j := job(id, key, pOf(key))
		if i%2 == 1 {
			j.Handler = "campaign.credit"
		}
		j.SubmittedAt = time.Now().UnixMilli()
		return j
	}
	readAll := func() map[int][]store.Job {
		cursors := map[int]string{}
		for p := 0; p < P; p++ {
			cursors[p] = store.StartID
		}
		read, err := s.Read(ctx, cursors, 1000, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return read
	}
	// Finished jobs: done, rejected, cancelled and dead, in turn.
	var first []store.Job
	for i := range 40 {
		first = append(first, mk(fmt.Sprintf("a%02d", i), fmt.Sprintf("k%d", i%10), i))
	}
	if _, err := s.Enqueue(ctx, first); err != nil {
		t.Fatal(err)
	}
	for p, js := range readAll() {
		b := &store.Batch{Attempts: map[string]int{}, Jobs: js}
		for _, j := range js {
			b.Acked = append(b.Acked, j.StreamID)
			var n int
			fmt.Sscanf(j.ID, "a%d", &n)
			switch n % 4 {
			case 0:
				b.Done = append(b.Done, j.ID)
				b.Results = append(b.Results, store.Result{JobID: j.ID, Value: []byte(`"ok"`)})
				want[store.StateDone] = append(want[store.StateDone], j.ID)
			case 1:
				b.Rejected = append(b.Rejected, store.Rejection{JobID: j.ID, Attempts: 1, Reason: "no"})
				want[store.StateRejected] = append(want[store.StateRejected], j.ID)
			case 2:
				b.Cancelled = append(b.Cancelled, store.Cancellation{JobID: j.ID})
				want[store.StateCancelled] = append(want[store.StateCancelled], j.ID)
			case 3:
				j.Errors = []string{"attempt 1: bad"}
				b.Dead = append(b.Dead, store.DeadJob{Job: j, Error: "bad"})
				want[store.StateDead] = append(want[store.StateDead], j.ID)
			}
		}
		if err := s.CommitBatch(ctx, p, grants[p], b); err != nil {
			t.Fatal(err)
		}
	}
	// Held keys: a job parked for a retry with two waiting behind it.
	var held []store.Job
	for n := range 5 {
		for i := 1; i <= 3; i++ {
			held = append(held, mk(fmt.Sprintf("h%d-%d", n, i), fmt.Sprintf("h%d", n), i))
		}
	}
	if _, err := s.Enqueue(ctx, held); err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(time.Hour).UnixMilli()
	for p, js := range readAll() {
		b := &store.Batch{}
		byKey := map[string][]store.Job{}
		var order []string
		for _, j := range js {
			b.Acked = append(b.Acked, j.StreamID)
			if byKey[j.Key] == nil {
				order = append(order, j.Key)
			}
			byKey[j.Key] = append(byKey[j.Key], j)
		}
		for _, key := range order {
			line := byKey[key]
			head := line[0]
			head.Attempt, head.NotBefore, head.Errors = 2, far, []string{"attempt 1: later"}
			b.Keys = append(b.Keys, store.KeyPlan{Key: key, Park: &head, Front: line[1:]})
			want[store.StateRetrying] = append(want[store.StateRetrying], head.ID)
			for _, w := range line[1:] {
				want[store.StateQueued] = append(want[store.StateQueued], w.ID)
			}
		}
		if err := s.CommitBatch(ctx, p, grants[p], b); err != nil {
			t.Fatal(err)
		}
	}
	// Delayed jobs, three due at each time.
	var delayed []store.Job
	for i := range 15 {
		j := mk(fmt.Sprintf("d%02d", i), fmt.Sprintf("dk%d", i%4), i)
		j.NotBefore = far + int64(i/3)
		delayed = append(delayed, j)
		want[store.StateDelayed] = append(want[store.StateDelayed], j.ID)
	}
	// Queued jobs, in the queues.
	var queued []store.Job
	for i := range 25 {
		queued = append(queued, mk(fmt.Sprintf("b%02d", i), fmt.Sprintf("k%d", i%7), i))
		want[store.StateQueued] = append(want[store.StateQueued], queued[i].ID)
	}
	if _, err := s.Enqueue(ctx, append(delayed, queued...)); err != nil {
		t.Fatal(err)
	}
	for _, ids := range want {
		sort.Strings(ids)
	}
	return want
}

// listAll pages through a listing with limit per page and returns every
// id listed, in the order listed, and how many pages it took.
func listAll(t *testing.T, s *store.Store, q store.ListQuery, limit int) ([]store.JobInfo, int) {
	t.Helper()
	var all []store.JobInfo
	pages := 0
	q.Limit = limit
	for {
		pages++
		got, next, err := s.ListJobs(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > limit {
			t.Fatalf("a page of %d jobs, over the limit %d", len(got), limit)
		}
		all = append(all, got...)
		if next == "" {
			return all, pages
		}
		if pages > 1000 {
			t.Fatal("listing does not end")
		}
		q.After = next
	}
}

func infoIDs(js []store.JobInfo) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

// TestListJobsCoversEachJobOnce: in every state, paging through the
// partitions with any page size lists every job of the state exactly
// once, in partition order, and nothing else; filters by handler, key and
// partition list the matching ones.
func TestListJobsCoversEachJobOnce(t *testing.T) {
	s := setup(t)
	want := jobsInEveryState(t, s)
	for _, state := range []store.JobState{store.StateQueued, store.StateDelayed, store.StateRetrying, store.StateDone,
		store.StateDead, store.StateRejected, store.StateCancelled} {
		for _, limit := range []int{1, 3, 7, 1000} {
			got, pages := listAll(t, s, store.ListQuery{State: state, Partition: -1}, limit)
			listed := infoIDs(got)
			sorted := slices.Clone(listed)
			sort.Strings(sorted)
			if !slices.Equal(sorted, want[state]) {
				t.Errorf("%v, %d a page: listed %v, want %v", state, limit, listed, want[state])
				continue
			}
			for i := 1; i < len(got); i++ {
				if got[i].Partition < got[i-1].Partition {
					t.Errorf("%v: %s of partition %d listed after %s of %d", state, got[i].ID, got[i].Partition, got[i-1].ID, got[i-1].Partition)
				}
			}
			for _, j := range got {
				// A delayed job counts as submitted when due: no submission time yet.
				if j.State != state || j.Handler == "" || j.Key == "" || (j.SubmittedAt == 0) != (state == store.StateDelayed) {
					t.Errorf("%v: %s listed as %+v", state, j.ID, j)
				}
			}
			if limit == 3 {
				t.Logf("%-9v %2d jobs in %2d pages of 3", state, len(got), pages)
			}
		}
	}
	// Delayed jobs come by due time in each partition.
	got, _ := listAll(t, s, store.ListQuery{State: store.StateDelayed, Partition: -1}, 2)
	for i := 1; i < len(got); i++ {
		if got[i].Partition == got[i-1].Partition && got[i].NextRun < got[i-1].NextRun {
			t.Errorf("delayed %s (due %d) listed after %s (due %d)", got[i].ID, got[i].NextRun, got[i-1].ID, got[i-1].NextRun)
		}
	}
	// Filters.
	byHandler, _ := listAll(t, s, store.ListQuery{State: store.StateQueued, Handler: "campaign.credit", Partition: -1}, 2)
	for _, j := range byHandler {
		if j.Handler != "campaign.credit" {
			t.Errorf("handler filter listed %+v", j)
		}
	}
	if n := len(byHandler); n == 0 || n >= len(want[store.StateQueued]) {
		t.Errorf("handler filter listed %d of %d queued jobs", n, len(want[store.StateQueued]))
	}
	byKey, _ := listAll(t, s, store.ListQuery{State: store.StateDone, Key: "k4", Partition: -1}, 1)
	if got := infoIDs(byKey); !slices.Equal(got, []string{"a04", "a24"}) {
		t.Errorf("done jobs of key k4: %v, want a04 a24", got)
	}
	p := sharding.PartitionOf("h2", 8)
	byPart, _ := listAll(t, s, store.ListQuery{State: store.StateRetrying, Partition: p}, 1)
	if !slices.Contains(infoIDs(byPart), "h2-1") {
		t.Errorf("retrying jobs of partition %d: %v, want h2-1 among them", p, infoIDs(byPart))
	}
	for _, j := range byPart {
		if j.Partition != p {
			t.Errorf("partition filter listed %+v", j)
		}
	}
	if _, _, err := s.ListJobs(context.Background(), store.ListQuery{State: store.StateDone, Partition: -1, After: "x"}); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

// TestDescribeJobs: each state reads back with what its job carries.
func TestDescribeJobs(t *testing.T) {
	s := setup(t)
	jobsInEveryState(t, s)
	ctx := context.Background()
	s.RequestCancels(ctx, sharding.PartitionOf("k0", 8), []string{"b00"}, time.Now())
	got, err := s.Describe(ctx, []string{"a00", "a01", "a02", "a03", "h1-1", "h1-2", "d03", "b00", "nope", store.EmittedID("a00", 0)})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.JobInfo{}
	for _, j := range got {
		byID[j.ID] = j
	}
	check := func(id string, ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %s; got %+v", id, what, byID[id])
		}
	}
	j := byID["a00"]
	check("a00", j.State == store.StateDone && string(j.Result) == `"ok"` && j.FinishedAt > 0 && j.Attempts == 1, "done with its result and finish time")
	j = byID["a01"]
	check("a01", j.State == store.StateRejected && j.Error == "no", "rejected with its reason")
	j = byID["a02"]
	check("a02", j.State == store.StateCancelled && j.Attempts == 0 && j.Handler == "donor.donate", "cancelled, never run")
	j = byID["a03"]
	check("a03", j.State == store.StateDead && len(j.Errors) == 1 && string(j.Payload) != "" && j.FinishedAt > 0, "dead with its history and payload")
	j = byID["h1-1"]
	check("h1-1", j.State == store.StateRetrying && j.Attempts == 1 && j.NextRun > time.Now().UnixMilli() && j.Error == "attempt 1: later", "retrying, next run in the future")
	j = byID["h1-2"]
	check("h1-2", j.State == store.StateQueued && strings.Contains(j.Note, "h1-1"), "queued behind h1-1")
	j = byID["d03"]
	check("d03", j.State == store.StateDelayed && j.NextRun > time.Now().UnixMilli() && j.SubmittedAt == 0, "delayed until its due time")
	j = byID["b00"]
	check("b00", j.State == store.StateQueued && j.CancelRequested && j.Key == "k0", "queued with a cancel asked")
	j = byID["nope"]
	check("nope", j.State == store.StateUnknown && j.Partition == -1, "unknown")
	j = byID[store.EmittedID("a00", 0)]
	check("emitted", j.State == store.StateUnknown, "unknown: a00 emitted nothing")
}

// TestListJobsReplayedDeadLetterOnce: a job dead-lettered, replayed and
// then done is in its partition's finished log twice, once per end; it is
// listed once, as done, and no longer as dead.
func TestListJobsReplayedDeadLetterOnce(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 2
	grant, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("phoenix", "k", p)}); err != nil {
		t.Fatal(err)
	}
	cursor := store.StartID
	commit := func(finish func(b *store.Batch, j store.Job)) {
		t.Helper()
		read, err := s.Read(ctx, map[int]string{p: cursor}, 10, time.Millisecond)
		if err != nil || len(read[p]) != 1 {
			t.Fatalf("read %d jobs: %v", len(read[p]), err)
		}
		j := read[p][0]
		cursor = j.StreamID
		b := &store.Batch{Attempts: map[string]int{}, Jobs: read[p], Acked: []string{j.StreamID}}
		finish(b, j)
		if err := s.CommitBatch(ctx, p, grant, b); err != nil {
			t.Fatal(err)
		}
	}
	commit(func(b *store.Batch, j store.Job) { b.Dead = []store.DeadJob{{Job: j, Error: "bad"}} })
	if n, err := s.ReplayDead(ctx, []string{"phoenix"}); err != nil || n != 1 {
		t.Fatalf("replayed %d: %v", n, err)
	}
	commit(func(b *store.Batch, j store.Job) { b.Done = []string{j.ID} })
	for state, want := range map[store.JobState][]string{store.StateDone: {"phoenix"}, store.StateDead: {}} {
		got, _ := listAll(t, s, store.ListQuery{State: state, Partition: -1}, 10)
		if ids := infoIDs(got); !slices.Equal(ids, want) {
			t.Errorf("%v: listed %v, want %v", state, ids, want)
		}
	}
}
