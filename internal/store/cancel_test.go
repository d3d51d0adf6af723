package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/redis/go-redis/v9"
)

// cancelsOf lists the cancels waiting in partition p.
func cancelsOf(t *testing.T, s *store.Store, p int) []string {
	t.Helper()
	ids, err := s.Client().ZRange(context.Background(), keys.For(p).Cancels(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// statusOf is a job's record status ("" while unfinished).
func statusOf(t *testing.T, s *store.Store, p int, id string) string {
	t.Helper()
	st, _, _, _ := recordOf(t, s.Client(), keys.For(p).Job(id))
	return st
}

// recordOf is what a job record's "s" says: its status ("" while
// unfinished), finish time, attempts and emitted count.
func recordOf(t *testing.T, rdb redis.Cmdable, key string) (status, finished, attempts, emitted string) {
	t.Helper()
	s := rdb.HGet(context.Background(), key, "s").Val()
	if len(s) <= 1 {
		return s, "", "", ""
	}
	f := strings.Fields(s[1:])
	if len(f) != 3 {
		t.Fatalf("record %s: status %q, want <status><ms> <attempts> <emitted>", key, s)
	}
	return s[:1], f[0], f[1], f[2]
}

func places(t *testing.T, s *store.Store, p int) map[string]store.CancelPlace {
	t.Helper()
	reqs, err := s.LoadCancels(context.Background(), p, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.CancelPlace{}
	for _, r := range reqs {
		out[r.ID] = r.Place
	}
	return out
}

// TestCancelQueued: a cancel asked for a queued job is found in the
// queue; the batch that reads the job finishes it as cancelled instead of
// running it, and settles the cancel. The id stays taken: submitted again
// it is a duplicate that says it was cancelled.
func TestCancelQueued(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 2
	grant, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("q1", "a", p), job("q2", "b", p)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestCancels(ctx, p, []string{"q2"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if pend, err := s.PendingCancels(ctx, []int{p, p + 1}); err != nil || !pend[p] || pend[p+1] {
		t.Fatalf("pending cancels %v %v, want partition %d only", pend, err, p)
	}
	if pl := places(t, s, p); pl["q2"] != store.CancelQueued {
		t.Fatalf("q2 found %v, want queued", pl["q2"])
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	b := &store.Batch{Done: []string{"q1"}, Acked: []string{read[p][0].StreamID, read[p][1].StreamID},
		Cancels: store.Cancels{Cancelled: []store.Cancellation{{JobID: "q2"}}}}
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, s, p, "q2"); st != "c" {
		t.Fatalf("q2's status %q, want c", st)
	}
	if c := cancelsOf(t, s, p); len(c) != 0 {
		t.Fatalf("cancels left: %v", c)
	}
	sts, err := s.StatusesIn(ctx, []string{"q2"}, nil)
	if err != nil || !sts[0].Finished || !sts[0].Cancelled || sts[0].Attempts != 0 {
		t.Fatalf("q2's status %+v %v, want finished, cancelled, no attempts", sts[0], err)
	}
	res, err := s.Enqueue(ctx, []store.Job{job("q2", "b", p), job("q1", "a", p)})
	if err != nil || !res[0].Duplicate || res[0].End != store.EndedCancelled || res[1].End != store.EndedDone {
		t.Fatalf("q2 and q1 submitted again: %+v %v, want duplicates, cancelled and done", res, err)
	}
	fin, _ := s.Client().XRange(ctx, keys.For(p).Finished(), "-", "+").Result()
	if len(fin) != 1 || fin[0].Values["g"] != "dq1 0 0 0  cq2 0 0 0 " {
		t.Fatalf("finished log %+v, want one entry of q1 done and q2 cancelled", fin)
	}
}

// TestCancelDelayed: a delayed job is cancelled in the owner's commit
// while it is still delayed; one a submission has moved to the queue
// since is left for the batch that reads it.
func TestCancelDelayed(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 4
	grant, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	later := job("d1", "k", p)
	later.NotBefore = time.Now().Add(time.Hour).UnixMilli()
	soon := job("d2", "k", p)
	soon.NotBefore = time.Now().Add(50 * time.Millisecond).UnixMilli()
	if _, err := s.Enqueue(ctx, []store.Job{later, soon}); err != nil {
		t.Fatal(err)
	}
	s.RequestCancels(ctx, p, []string{"d1", "d2"}, time.Now())
	reqs, err := s.LoadCancels(ctx, p, 10)
	if err != nil || len(reqs) != 2 {
		t.Fatalf("cancels %+v %v", reqs, err)
	}
	for _, r := range reqs {
		if r.Place != store.CancelDelayed || r.Job.Handler != "donor.donate" || r.Job.NotBefore == 0 {
			t.Fatalf("%s found %+v, want delayed with its body and due time", r.ID, r)
		}
	}
	// d2 falls due and a submission moves it to the queue before the commit.
	time.Sleep(60 * time.Millisecond) // d2's due time (50ms after it was made) waited out on purpose
	if _, err := s.Enqueue(ctx, []store.Job{job("x", "other", p)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Cancels: store.Cancels{Revoked: []store.Job{reqs[0].Job, reqs[1].Job}}}); err != nil {
		t.Fatal(err)
	}
	if st1, st2 := statusOf(t, s, p, "d1"), statusOf(t, s, p, "d2"); st1 != "c" || st2 != "" {
		t.Fatalf("statuses d1 %q d2 %q, want c and none", st1, st2)
	}
	if c := cancelsOf(t, s, p); !slices.Equal(c, []string{"d2"}) {
		t.Fatalf("cancels left %v, want d2's", c)
	}
	if n, _ := s.Client().ZCard(ctx, keys.For(p).Delayed()).Result(); n != 0 {
		t.Fatalf("%d jobs delayed, want none", n)
	}
	if bodies, _ := s.Client().HLen(ctx, keys.For(p).Bodies()).Result(); bodies != 0 {
		t.Fatalf("%d bodies left", bodies)
	}
	if pl := places(t, s, p); pl["d2"] != store.CancelQueued {
		t.Fatalf("d2 found %v, want queued", pl["d2"])
	}
}

// TestCancelRetrying: cancelling the job that holds its key for a retry
// finishes it and frees the key: the jobs waiting behind it run in the
// same batch, and a waiting job the batch did not read leaves the line.
func TestCancelRetrying(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 3
	grant, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if _, err := s.Enqueue(ctx, []store.Job{job("r1", "k", p), job("r2", "k", p), job("r3", "k", p), job("r4", "k", p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	js := read[p]
	far := time.Now().Add(time.Hour).UnixMilli()
	r1 := js[0]
	r1.Attempt, r1.NotBefore, r1.Errors = 2, far, []string{"attempt 1: boom"}
	acked := []string{js[0].StreamID, js[1].StreamID, js[2].StreamID, js[3].StreamID}
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Acked: acked,
		Keys: []store.KeyPlan{{Key: "k", Park: &r1, Front: js[1:]}}}); err != nil {
		t.Fatal(err)
	}
	s.RequestCancels(ctx, p, []string{"r1", "r4"}, time.Now())
	reqs, err := s.LoadCancels(ctx, p, 10)
	if err != nil || len(reqs) != 2 || reqs[0].Place != store.CancelParked || reqs[1].Place != store.CancelWaiting {
		t.Fatalf("cancels %+v %v, want r1 parked and r4 waiting", reqs, err)
	}
	if reqs[0].Job.Attempt != 2 || len(reqs[0].Job.Errors) != 1 {
		t.Fatalf("r1's body %+v", reqs[0].Job)
	}
	// r1 is not due: its line is read for the cancel, two waiting jobs of it.
	runs, err := s.KeyRunsOf(ctx, p, []store.Job{reqs[0].Job}, 2)
	if err != nil || len(runs) != 1 || len(runs[0].Jobs) != 3 || !runs[0].More {
		t.Fatalf("line of k %+v %v, want r1 r2 r3 and more", runs, err)
	}
	b := &store.Batch{Done: []string{"r2", "r3"}, Unparked: []string{"r1", "r2", "r3"},
		Keys: []store.KeyPlan{{Key: "k", Trim: 2, Next: true}},
		Cancels: store.Cancels{Cancelled: []store.Cancellation{{JobID: "r1", Attempts: 1, Error: "attempt 1: boom"}},
			Unwaited: []store.Job{js[3]}}}
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"r1": "c", "r2": "d", "r3": "d", "r4": "c"} {
		if st := statusOf(t, s, p, id); st != want {
			t.Errorf("%s's status %q, want %q", id, st, want)
		}
	}
	sts, _ := s.StatusesIn(ctx, []string{"r1"}, []int{p})
	if !sts[0].Cancelled || sts[0].Attempts != 1 || sts[0].Error != "attempt 1: boom" {
		t.Errorf("r1's status %+v, want cancelled after 1 attempt with its error", sts[0])
	}
	if d, _ := s.Depth(ctx, []int{p}); d[p] != 0 {
		t.Errorf("depth %d, want 0: nothing parked, waiting or held", d[p])
	}
	if h, _ := s.Client().HLen(ctx, keys.For(p).Holds()).Result(); h != 0 {
		t.Errorf("%d keys still held", h)
	}
	if c := cancelsOf(t, s, p); len(c) != 0 {
		t.Errorf("cancels left %v", c)
	}
}

// TestCancelTooLate: a cancel found for a job that finished is settled
// and changes nothing; a commit refused for a job finished before applies
// none of its cancels.
func TestCancelTooLate(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 1
	grant, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	s.Enqueue(ctx, []store.Job{job("t1", "a", p), job("t2", "b", p)})
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Done: []string{"t1"}}); err != nil {
		t.Fatal(err)
	}
	s.RequestCancels(ctx, p, []string{"t1", "t2", "gone"}, time.Now())
	pl := places(t, s, p)
	if pl["t1"] != store.CancelFinished || pl["t2"] != store.CancelQueued || pl["gone"] != store.CancelGone {
		t.Fatalf("places %v", pl)
	}
	err := s.CommitBatch(ctx, p, grant, &store.Batch{Done: []string{"t1"},
		Cancels: store.Cancels{Cancelled: []store.Cancellation{{JobID: "t2"}}, Settled: []string{"t1", "gone"}}})
	if !errors.Is(err, store.ErrAlreadyFinished) {
		t.Fatalf("commit of t1 again: %v, want ErrAlreadyFinished", err)
	}
	if st := statusOf(t, s, p, "t2"); st != "" || len(cancelsOf(t, s, p)) != 3 {
		t.Fatalf("a refused commit cancelled t2 (%q) or settled cancels (%v)", st, cancelsOf(t, s, p))
	}
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Cancels: store.Cancels{Settled: []string{"t1", "gone"}}}); err != nil {
		t.Fatal(err)
	}
	if c := cancelsOf(t, s, p); !slices.Equal(c, []string{"t2"}) {
		t.Fatalf("cancels left %v, want t2's", c)
	}
	if st := statusOf(t, s, p, "t1"); st != "d" {
		t.Fatalf("t1's status %q", st)
	}
}

// TestRecordKeepsMeta: a finished job's record tells its handler, key,
// submission time and when it finished, written by the commit that
// finishes it (an emitted job has no record before), and stays in
// Redis's compact encoding.
func TestRecordKeepsMeta(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 6
	grant, _ := lease.Claim(ctx, s.Client(), p, "w~1", "")
	j := job("m1", "key with spaces: and colons", p)
	j.SubmittedAt = 1_700_000_000_123
	s.Enqueue(ctx, []store.Job{j})
	child := store.Job{ID: store.EmittedID("m0", 0), Handler: "campaign.credit", Key: "water", SubmittedAt: 1_700_000_000_456}
	before := time.Now().UnixMilli()
	err := s.CommitBatch(ctx, p, grant, &store.Batch{Done: []string{"m1", child.ID}, Jobs: []store.Job{j, child}})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := s.Describe(ctx, []string{"m1", child.ID})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []store.Job{j, child} {
		got := infos[i]
		if got.State != store.StateDone || got.Handler != want.Handler || got.Key != want.Key || got.SubmittedAt != want.SubmittedAt ||
			got.Partition != p || got.FinishedAt < before || got.Attempts != 1 {
			t.Errorf("%s described as %+v", want.ID, got)
		}
	}
	if h := s.Client().HGet(ctx, keys.For(p).Job("m1"), "h").Val(); h != j.ContentHash() {
		t.Errorf("m1's record hash %q, want its content hash", h)
	}
	if enc := s.Client().ObjectEncoding(ctx, keys.For(p).Job("m1")).Val(); enc != "listpack" {
		t.Errorf("m1's record is encoded %s, want listpack (its values over hash-max-listpack-value?)", enc)
	}
}
