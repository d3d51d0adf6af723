package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/redis/go-redis/v9"
)

// TestFinishedJobsShowTheirMeta: a job finished by a commit (done,
// rejected, cancelled by the batch, revoked while delayed) keeps its
// handler, key and submission time in its partition's finished log, not
// in its record; jobs show (Describe) and jobs list (ListJobs) find them
// there, whatever bytes the key and handler hold, and WaitFinished sees
// the jobs finish.
func TestFinishedJobsShowTheirMeta(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 3
	rdb := s.Client()
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	from, err := s.FinishedFrom(ctx, []int{p})
	if err != nil {
		t.Fatal(err)
	}
	odd := map[string][2]string{ // id: handler, key
		"plain":  {"donor.donate", "alice"},
		"spaces": {"h with space", " a key with spaces "},
		"lines":  {"donor.donate", "two\nlines\r\n"},
		"binary": {"\xff\xfe", "\x00 \xc3\x28 not utf-8 \xff"},
		"items":  {"d9 1 2 3 ", "dplain 0 0 0 "}, // looks like log items
		"rej":    {"donor.donate", "bob"},
		"can":    {"campaign.credit", "carol 1"},
	}
	var jobs []store.Job
	for _, id := range []string{"plain", "spaces", "lines", "binary", "items", "rej", "can"} {
		j := job(id, odd[id][1], p)
		j.Handler, j.SubmittedAt = odd[id][0], time.Now().UnixMilli()-int64(len(jobs))
		jobs = append(jobs, j)
	}
	later := job("later", "de layed", p)
	later.Handler, later.NotBefore = "campaign.credit", time.Now().Add(time.Hour).UnixMilli()
	if _, err := s.Enqueue(ctx, append(jobs, later)); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 100, time.Millisecond)
	if err != nil || len(read[p]) != len(jobs) {
		t.Fatalf("read %d jobs: %v", len(read[p]), err)
	}
	submitted := map[string]int64{}
	b := &store.Batch{Jobs: read[p], Attempts: map[string]int{},
		Done:     []string{"plain", "spaces", "lines", "binary", "items"},
		Results:  []store.Result{{JobID: "plain", Value: []byte(`"ok"`)}},
		Rejected: []store.Rejection{{JobID: "rej", Attempts: 1, Reason: "no"}},
		Cancels: store.Cancels{Cancelled: []store.Cancellation{{JobID: "can"}},
			Revoked: []store.Job{{ID: "later", Handler: later.Handler, Key: later.Key, SubmittedAt: 1_700_000_000_000}}},
	}
	for _, j := range read[p] {
		b.Acked = append(b.Acked, j.StreamID)
		submitted[j.ID] = j.SubmittedAt
		if j.SubmittedAt == 0 {
			t.Fatalf("%s read without a submission time", j.ID)
		}
	}
	odd["later"], submitted["later"] = [2]string{later.Handler, later.Key}, 1_700_000_000_000
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatal(err)
	}
	states := map[string]store.JobState{"plain": store.StateDone, "spaces": store.StateDone, "lines": store.StateDone,
		"binary": store.StateDone, "items": store.StateDone, "rej": store.StateRejected, "can": store.StateCancelled,
		"later": store.StateCancelled}
	check := func(how string, j store.JobInfo) {
		t.Helper()
		if j.State != states[j.ID] || j.Handler != odd[j.ID][0] || j.Key != odd[j.ID][1] || j.SubmittedAt != submitted[j.ID] ||
			j.FinishedAt == 0 || j.Partition != p {
			t.Errorf("%s %s: %+v, want %v of handler %q, key %q, submitted at %d", how, j.ID, j, states[j.ID],
				odd[j.ID][0], odd[j.ID][1], submitted[j.ID])
		}
	}
	// The records leave the meta out; their finish time is their log entry's.
	fin, err := rdb.XRange(ctx, keys.For(p).Finished(), "-", "+").Result()
	if err != nil || len(fin) != 1 {
		t.Fatalf("finished log %+v %v, want one entry", fin, err)
	}
	entryMs, _, _ := strings.Cut(fin[0].ID, "-")
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
		rec, err := rdb.HGetAll(ctx, keys.For(p).Job(id)).Result()
		if _, f, _, _ := recordOf(t, rdb, keys.For(p).Job(id)); err != nil || f != entryMs {
			t.Errorf("record of %s: %v %v, want finished at %s", id, rec, err, entryMs)
		}
		for _, f := range []string{"n", "k", "t", "f", "a", "e"} {
			if _, ok := rec[f]; ok {
				t.Errorf("record of %s keeps %q: %v", id, f, rec)
			}
		}
	}
	got, err := s.Describe(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range got {
		check("shown", j)
	}
	listed := 0
	for _, state := range []store.JobState{store.StateDone, store.StateRejected, store.StateCancelled} {
		for _, limit := range []int{1, 100} {
			js, _ := listAll(t, s, store.ListQuery{State: state, Partition: p}, limit)
			for _, j := range js {
				check("listed", j)
			}
			listed += len(js)
		}
	}
	if listed != 2*len(states) {
		t.Errorf("listed %d jobs, want %d", listed/2, len(states))
	}
	js, _ := listAll(t, s, store.ListQuery{State: store.StateDone, Partition: p, Handler: "\xff\xfe"}, 10)
	if len(js) != 1 || js[0].ID != "binary" {
		t.Errorf("done jobs of handler \\xff\\xfe: %+v, want binary", js)
	}
	for _, id := range []string{"binary", "later", "rej"} {
		f := map[int]string{p: from[p]}
		if ok, err := s.WaitFinished(ctx, f, map[string]bool{id: true}, time.Second); err != nil || !ok {
			t.Errorf("WaitFinished for %s: %v %v", id, ok, err)
		}
	}
}

// TestFinishedLogAheadOfTheClock: when the finished log's last entry is
// ahead of Redis's clock, a commit's entry takes its millisecond (a
// later sequence number), and its records that millisecond: they still
// find their meta. If the last entry was deleted, the commit still goes
// through.
func TestFinishedLogAheadOfTheClock(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 5
	rdb := s.Client()
	k := keys.For(p)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	ahead := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: k.Finished(), ID: ahead + "-5", Values: []string{"g", ""}}).Err(); err != nil {
		t.Fatal(err)
	}
	commitOne := func(id string) {
		t.Helper()
		j := job(id, "key of "+id, p)
		j.SubmittedAt = time.Now().UnixMilli()
		if _, err := s.Enqueue(ctx, []store.Job{j}); err != nil {
			t.Fatal(err)
		}
		read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, time.Millisecond)
		if err != nil || len(read[p]) != 1 {
			t.Fatalf("read %d jobs: %v", len(read[p]), err)
		}
		b := &store.Batch{Jobs: read[p], Done: []string{id}, Acked: []string{read[p][0].StreamID}, Attempts: map[string]int{}}
		if err := s.CommitBatch(ctx, p, grant, b); err != nil {
			t.Fatal(err)
		}
	}
	commitOne("a")
	if _, f, _, _ := recordOf(t, rdb, k.Job("a")); f != ahead {
		t.Errorf("a finished at %s, want the log's last millisecond %s", f, ahead)
	}
	got, err := s.Describe(ctx, []string{"a"})
	if err != nil || got[0].Key != "key of a" || got[0].Handler != "donor.donate" || got[0].SubmittedAt == 0 {
		t.Errorf("a shown as %+v %v", got, err)
	}
	// The entries gone, the stream's last id is past Redis's time: the
	// entry goes after it.
	all, _ := rdb.XRange(ctx, k.Finished(), "-", "+").Result()
	for _, m := range all {
		rdb.XDel(ctx, k.Finished(), m.ID)
	}
	commitOne("b")
	if n, _ := rdb.XLen(ctx, k.Finished()).Result(); n != 1 {
		t.Errorf("%d entries in the finished log, want b's", n)
	}
	if got, err := s.Describe(ctx, []string{"b"}); err != nil || got[0].State != store.StateDone {
		t.Errorf("b shown as %+v %v", got, err)
	}
}

// TestFinishedOldFormat: a record that keeps its handler, key and
// submission time itself and a finished log entry of ids alone ("f"), as
// a release before wrote them, still show and list.
func TestFinishedOldFormat(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 6
	rdb := s.Client()
	k := keys.For(p)
	from, err := s.FinishedFrom(ctx, []int{p})
	if err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, k.Job("old1"), "h", "x", "s", "d", "f", "1700000000500", "n", "donor.donate", "k", "old key", "t", "1700000000000", "r", `"ok"`)
	rdb.HSet(ctx, k.Job("old2"), "h", "x", "s", "n", "f", "1700000000500", "n", "campaign.credit", "k", "k2", "t", "1700000000001", "m", "no")
	rdb.HSet(ctx, k.Job("old3"), "h", "x", "s", "c", "f", "1700000000500", "a", "0", "n", "campaign.credit", "k", "k3", "t", "1700000000002")
	// A record without them whose entry is gone shows without them.
	rdb.HSet(ctx, k.Job("bare"), "h", "x", "s", "d", "f", "1600000000000")
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: k.Finished(), Values: []string{"f", "dold1 nold2 cold3 dbare"}}).Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.JobInfo{
		"old1": {State: store.StateDone, Handler: "donor.donate", Key: "old key", SubmittedAt: 1_700_000_000_000},
		"old2": {State: store.StateRejected, Handler: "campaign.credit", Key: "k2", SubmittedAt: 1_700_000_000_001},
		"old3": {State: store.StateCancelled, Handler: "campaign.credit", Key: "k3", SubmittedAt: 1_700_000_000_002},
		"bare": {State: store.StateDone},
	}
	check := func(how string, j store.JobInfo) {
		t.Helper()
		w := want[j.ID]
		if j.State != w.State || j.Handler != w.Handler || j.Key != w.Key || j.SubmittedAt != w.SubmittedAt {
			t.Errorf("%s %s: %+v, want %+v", how, j.ID, j, w)
		}
	}
	got, err := s.Describe(ctx, []string{"old1", "old2", "old3", "bare"})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range got {
		check("shown", j)
	}
	n := 0
	for _, state := range []store.JobState{store.StateDone, store.StateRejected, store.StateCancelled} {
		js, _ := listAll(t, s, store.ListQuery{State: state, Partition: p}, 10)
		for _, j := range js {
			check("listed", j)
		}
		n += len(js)
	}
	if n != len(want) {
		t.Errorf("listed %d jobs, want %d", n, len(want))
	}
	if ok, err := s.WaitFinished(ctx, from, map[string]bool{"old2": true}, time.Second); err != nil || !ok {
		t.Errorf("WaitFinished for old2: %v %v", ok, err)
	}
}

// TestRecordFormsRead: every reader of a finished record's status (the
// enqueue script's dedup, statuses, Done, the load's finished check, an
// emitted job's status through its parent, jobs show and list) reads the
// record a commit writes, its finish time, attempts and emitted count
// packed in "s", and the same record in the form of a release before,
// the status alone in "s" and the rest in fields of their own.
func TestRecordFormsRead(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := 2
	rdb := s.Client()
	k := keys.For(p)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	jobs := []store.Job{job("o1", "k1", p), job("o2", "k2", p), job("o3", "k3", p), job("o4", "k4", p)}
	for i := range jobs {
		jobs[i].SubmittedAt = time.Now().UnixMilli()
	}
	if _, err := s.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, time.Millisecond)
	if err != nil || len(read[p]) != len(jobs) {
		t.Fatalf("read %d jobs: %v", len(read[p]), err)
	}
	b := &store.Batch{Jobs: read[p], Attempts: map[string]int{"o1": 2},
		Done:     []string{"o1", "o4"},
		Results:  []store.Result{{JobID: "o4", Value: []byte(`"r4"`)}},
		Emits:    []store.Job{{ID: store.EmittedID("o1", 0), Handler: "campaign.credit", Key: "c", Payload: []byte(`{}`)}},
		Rejected: []store.Rejection{{JobID: "o2", Attempts: 3, Reason: "no"}},
		Cancels:  store.Cancels{Cancelled: []store.Cancellation{{JobID: "o3", Attempts: 0, Error: "late"}}}}
	for _, j := range read[p] {
		b.Acked = append(b.Acked, j.StreamID)
	}
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatal(err)
	}
	type want struct {
		end      store.End
		state    store.JobState
		attempts int
		result   string
		err      string
	}
	wants := map[string]want{
		"o1": {store.EndedDone, store.StateDone, 2, "", ""},
		"o2": {store.EndedRejected, store.StateRejected, 3, "", "no"},
		"o3": {store.EndedCancelled, store.StateCancelled, 0, "", "late"},
		"o4": {store.EndedDone, store.StateDone, 1, `"r4"`, ""},
	}
	ids := []string{"o1", "o2", "o3", "o4"}
	check := func(form string) {
		t.Helper()
		res, err := s.Enqueue(ctx, jobs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if w := wants[ids[i]]; !r.Duplicate || r.End != w.end {
				t.Errorf("%s: %s submitted again: %+v, want a duplicate that ended %v", form, ids[i], r, w.end)
			}
		}
		sts, err := s.StatusesIn(ctx, append(ids, store.EmittedID("o1", 0)), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range sts[:len(ids)] {
			if w := wants[ids[i]]; !st.Finished || st.Attempts != w.attempts || string(st.Result) != w.result || st.Error != w.err {
				t.Errorf("%s: status of %s %+v, want finished, %d attempts, result %q, error %q", form, ids[i], st, w.attempts, w.result, w.err)
			}
		}
		if !sts[len(ids)].Known {
			t.Errorf("%s: o1's emitted job unknown, want known through its parent", form)
		}
		if done, err := s.Done(ctx, ids, []int{p, p, p, p}); err != nil || !done[0] || done[1] || done[2] || !done[3] {
			t.Errorf("%s: done %v %v, want o1 and o4", form, done, err)
		}
		snap, err := s.Load(ctx, p, read[p], func(string) string { return "donor" })
		if err != nil || len(snap.Finished) != len(ids) {
			t.Errorf("%s: loaded as finished %v %v, want all", form, snap.Finished, err)
		}
		infos, err := s.Describe(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, j := range infos {
			if w := wants[ids[i]]; j.State != w.state || j.Attempts != w.attempts || j.Key != jobs[i].Key ||
				j.Handler != jobs[i].Handler || j.SubmittedAt != jobs[i].SubmittedAt || j.FinishedAt == 0 || string(j.Result) != w.result {
				t.Errorf("%s: %s shown as %+v", form, ids[i], j)
			}
		}
		for _, state := range []store.JobState{store.StateDone, store.StateRejected, store.StateCancelled} {
			js, _ := listAll(t, s, store.ListQuery{State: state, Partition: p}, 10)
			for _, j := range js {
				if w := wants[j.ID]; j.State != w.state || j.Attempts != w.attempts || j.Key == "" || j.SubmittedAt == 0 {
					t.Errorf("%s: %s listed as %+v", form, j.ID, j)
				}
			}
		}
	}
	check("packed")
	// The records as a release before wrote them.
	for i, id := range ids {
		st, f, a, e := recordOf(t, rdb, k.Job(id))
		fields := []any{"s", st, "f", f, "n", jobs[i].Handler, "k", jobs[i].Key, "t", jobs[i].SubmittedAt}
		if a != "1" {
			fields = append(fields, "a", a)
		}
		if e != "0" {
			fields = append(fields, "e", e)
		}
		if err := rdb.HSet(ctx, k.Job(id), fields...).Err(); err != nil {
			t.Fatal(err)
		}
		if got, _, _, _ := recordOf(t, rdb, k.Job(id)); got != st {
			t.Fatalf("record of %s not rewritten", id)
		}
	}
	check("fields")
}
