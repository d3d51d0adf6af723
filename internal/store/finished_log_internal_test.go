package store

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestLoggedRoundTrip: a finished log's "g" entry reads back the jobs it
// was built from, whatever bytes their handlers and keys hold; an "f"
// entry of a release before reads as ids and ends alone.
func TestLoggedRoundTrip(t *testing.T) {
	jobs := []loggedJob{
		{End: "d", ID: "a1", Handler: "donor.donate", Key: "alice", SubmittedAt: 1_700_000_000_123},
		{End: "n", ID: "a2", Handler: "h with space", Key: "two\nlines and spaces ", SubmittedAt: 1},
		{End: "c", ID: "a3", Handler: "", Key: "", SubmittedAt: 0},
		{End: "x", ID: "a4", Handler: "\xff\xfe", Key: "\x00 \xc3\x28 not utf-8 \xff", SubmittedAt: 42},
		{End: "d", ID: "a5", Handler: "d9 1 2 3 ", Key: "da1 0 0 0 ", SubmittedAt: -5}, // looks like items
		{End: "d", ID: "p1~0", Handler: "campaign.credit", Key: strings.Repeat("k", 300), SubmittedAt: 7},
		{End: "d", ID: "a6", Handler: " ", Key: " ", SubmittedAt: 9},
	}
	var b []byte
	for _, j := range jobs {
		b = appendLogged(b, j.End, j.ID, j.SubmittedAt, j.Handler, j.Key)
	}
	for i := range jobs {
		jobs[i].Meta = true
	}
	if got := loggedJobs(map[string]any{"g": string(b)}); !reflect.DeepEqual(got, jobs) {
		t.Fatalf("%q reads as\n%+v, want\n%+v", b, got, jobs)
	}
	// The sweep names the same jobs, in order.
	var named []string
	for _, j := range jobs {
		named = append(named, j.ID)
	}
	if ids, n := appendLoggedIDs(nil, string(b)); string(ids) != strings.Join(named, " ") || n != len(jobs) {
		t.Fatalf("the sweep names %q (%d), want %q", ids, n, strings.Join(named, " "))
	}
	// Cut short anywhere, it yields the whole jobs before the cut.
	for n := 0; n < len(b); n++ {
		got := loggedJobs(map[string]any{"g": string(b[:n])})
		if len(got) > len(jobs) || len(got) > 0 && !reflect.DeepEqual(got, jobs[:len(got)]) {
			t.Fatalf("cut at %d: %+v", n, got)
		}
	}
	old := loggedJobs(map[string]any{"f": "da1 cq2 xp1~0"})
	want := []loggedJob{{End: "d", ID: "a1"}, {End: "c", ID: "q2"}, {End: "x", ID: "p1~0"}}
	if !reflect.DeepEqual(old, want) {
		t.Fatalf("an f entry reads as %+v, want %+v", old, want)
	}
	if got := loggedJobs(map[string]any{}); len(got) != 0 {
		t.Fatalf("an empty entry reads as %+v", got)
	}
}

// TestCancelJobLogsLikeTheWorker: the item the commit script's cancelJob
// writes for a job is the one appendLogged writes.
func TestCancelJobLogsLikeTheWorker(t *testing.T) {
	const lua = `finished[#finished + 1] = 'c' .. id .. ' ' .. submitted .. ' ' .. #handler .. ' ' .. #key .. ' ' .. handler .. key`
	if !strings.Contains(commitPrologue, lua) {
		t.Fatalf("the prologue's cancelJob no longer logs as %s: update this test and appendLogged together", lua)
	}
	// What that Lua writes, by hand, for a job.
	id, submitted, handler, key := "w2", "1700000000000", "campaign.credit", "a b\nc"
	item := "c" + id + " " + submitted + " " + itoa(int64(len(handler))) + " " + itoa(int64(len(key))) + " " + handler + key
	if got := string(appendLogged(nil, "c", id, 1_700_000_000_000, handler, key)); got != item {
		t.Fatalf("appendLogged %q, Lua %q", got, item)
	}
}

// BenchmarkLoggedIDs: naming the jobs of a finished log entry of 256 for
// the sweep, per job.
func BenchmarkLoggedIDs(b *testing.B) {
	var g []byte
	for i := range 256 {
		g = appendLogged(g, statusDone, "d12-"+strconv.Itoa(i), 1764650000000, "donor.donate", "donor-"+strconv.Itoa(i))
	}
	entry := string(g)
	var ids []byte
	b.ReportAllocs()
	for b.Loop() {
		var n int
		if ids, n = appendLoggedIDs(ids[:0], entry); n != 256 {
			b.Fatalf("%d ids", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/job")
}
