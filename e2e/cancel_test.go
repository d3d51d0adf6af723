package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// showState runs "jobs show ID" and returns the job as printed.
func (c *cluster) showJob(id string) map[string]any {
	c.t.Helper()
	out, err := c.coordinator("jobs", "show", id)
	if err != nil {
		c.t.Fatalf("jobs show %s: %v", id, err)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		c.t.Fatalf("jobs show %s printed %q: %v", id, out, err)
	}
	return j
}

// waitState waits until "jobs show ID" says state.
func (c *cluster) waitState(id, state string) map[string]any {
	c.t.Helper()
	var j map[string]any
	testenv.Eventually(c.t, 30*time.Second, func() error {
		j = c.showJob(id)
		if j["state"] != state {
			return fmt.Errorf("job %s is %v, waiting for %s", id, j["state"], state)
		}
		return nil
	})
	return j
}

// keysOfPartition returns n keys of partition p of P.
func keysOfPartition(p, P, n int, prefix string) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := fmt.Sprintf("%s%d", prefix, i); sharding.PartitionOf(k, P) == p {
			out = append(out, k)
		}
	}
	return out
}

func addPayload(seq int64, poison string) string {
	p := map[string]any{"amount_cents": 1, "seq": seq, "bucket": "bk"}
	if poison != "" {
		p["poison"] = poison
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// TestJobsInspectAndCancel: on a TLS cluster of two workers (so cancels
// are forwarded to the owner), jobs show and list tell each state, and
// jobs cancel cancels a delayed job, a job retrying while its key's later
// job waits, a queued job behind a batch in flight, and the job of that
// batch once its attempt asks for a retry. A cancelled id stays taken; a
// read certificate may look but not cancel.
func TestJobsInspectAndCancel(t *testing.T) {
	const P = 4
	c := newCluster(t, "--partitions", fmt.Sprint(P), "--retry-backoff", "300ms", "--retry-backoff-max", "1s")
	plugin := chaosPlugin(t, c)
	c.startWith("w1", plugin)
	c.startWith("w2", plugin)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	submit := func(args ...string) string {
		t.Helper()
		out, err := c.coordinator(append([]string{"submit", "--handler", "account.add"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// A delayed job: shown, listed, cancelled; its id stays taken.
	submit("--id", "late-1", "--key", "l", "--in", "1h", "--payload", addPayload(1, ""))
	if j := c.showJob("late-1"); j["state"] != "delayed" || j["next_run"] == nil || j["handler"] != "account.add" || j["key"] != "l" {
		t.Fatalf("late-1 shown as %v", j)
	}
	if out, err := c.coordinator("jobs", "list", "--state", "delayed"); err != nil || !strings.Contains(out, "late-1") {
		t.Fatalf("jobs list --state delayed: %q %v", out, err)
	}
	if _, err := c.coordinatorAs(pki.RoleRead, "jobs", "show", "late-1"); err != nil {
		t.Errorf("a read certificate cannot show a job: %v", err)
	}
	if _, err := c.coordinatorAs(pki.RoleRead, "jobs", "cancel", "late-1"); err == nil || !strings.Contains(err.Error(), "CancelJobs needs role submit") {
		t.Errorf("a read certificate cancelled a job, or was not told why not: %v", err)
	}
	if out, err := c.coordinator("jobs", "cancel", "late-1"); err != nil || strings.TrimSpace(out) != "late-1: cancelled" {
		t.Fatalf("jobs cancel late-1: %q %v", out, err)
	}
	if j := c.showJob("late-1"); j["state"] != "cancelled" || j["finished_at"] == nil || j["attempts"] != 0.0 {
		t.Errorf("late-1 after its cancel: %v", j)
	}
	if _, err := c.coordinator("result", "late-1"); err == nil || !strings.Contains(err.Error(), "job late-1 was cancelled") {
		t.Errorf("result of late-1: %v", err)
	}
	if out := submit("--id", "late-1", "--key", "l", "--in", "1h", "--payload", addPayload(1, "")); !strings.Contains(out, "duplicate") || !strings.Contains(out, "cancelled") {
		t.Errorf("late-1 submitted again: %q, want a duplicate that says it was cancelled", out)
	}
	if out, err := c.coordinator("jobs", "cancel", "late-1"); err != nil || !strings.Contains(out, "already cancelled") {
		t.Errorf("late-1 cancelled again: %q %v", out, err)
	}
	if out, err := c.coordinator("jobs", "list", "--state", "cancelled"); err != nil || !strings.Contains(out, "late-1") {
		t.Errorf("jobs list --state cancelled: %q %v", out, err)
	}
	if n, _ := cl.Jobs(ctx, "late-1"); len(n) != 1 || n[0].State != workerpb.JobResult_CANCELLED {
		t.Errorf("client Jobs of late-1: %v", n)
	}

	// A job that keeps failing holds its key; cancelled, it lets the key's
	// next job run.
	submit("--id", "stuck-1", "--key", "s", "--max-attempts", "100", "--payload", addPayload(1, "fail"))
	submit("--id", "after-1", "--key", "s", "--payload", addPayload(2, ""))
	stuck := c.waitState("stuck-1", "retrying")
	if errs, _ := stuck["errors"].([]any); len(errs) == 0 || !strings.Contains(fmt.Sprint(errs[0]), "poison: always fails") {
		t.Errorf("stuck-1's error history: %v", stuck["errors"])
	}
	if j := c.showJob("after-1"); j["state"] != "queued" || !strings.Contains(fmt.Sprint(j["note"]), "stuck-1") {
		t.Errorf("after-1 behind stuck-1: %v", j)
	}
	if out, err := c.coordinator("jobs", "list", "--state", "retrying", "--key", "s"); err != nil || !strings.Contains(out, "stuck-1") {
		t.Errorf("jobs list --state retrying --key s: %q %v", out, err)
	} else {
		t.Logf("jobs list --state retrying --key s:\n%s", out)
	}
	if out, err := c.coordinator("jobs", "show", "stuck-1"); err == nil {
		t.Logf("jobs show stuck-1:\n%s", out)
	}
	if out, err := c.coordinator("jobs", "cancel", "stuck-1"); err != nil || strings.TrimSpace(out) != "stuck-1: cancelled" {
		t.Fatalf("jobs cancel stuck-1: %q %v", out, err)
	}
	if out, err := c.coordinator("result", "--wait", "20s", "after-1"); err != nil || !strings.Contains(out, `"seq":2`) {
		t.Fatalf("after-1 after stuck-1's cancel: %q %v", out, err)
	}
	if j := c.showJob("stuck-1"); j["state"] != "cancelled" || j["attempts"].(float64) < 1 || !strings.Contains(fmt.Sprint(j["error"]), "poison") {
		t.Errorf("stuck-1 after its cancel: %v", j)
	}
	// The credit after-1 emitted has a record that names it.
	credit := c.waitState("after-1~0", "done")
	if credit["handler"] != "bucket.credit" || credit["key"] != "bk" {
		t.Errorf("after-1's credit shown as %v", credit)
	}

	// A job whose attempt runs (it hangs until its 1s deadline) and a job
	// queued behind it in the same partition.
	keys := keysOfPartition(2, P, 2, "hq")
	submit("--id", "hang-1", "--key", keys[0], "--max-attempts", "100", "--payload", addPayload(1, "hang"))
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := c.coordinator("jobs", "list", "--state", "running")
		if err != nil || !strings.Contains(out, "hang-1") {
			return fmt.Errorf("hang-1 not listed running: %q %v", out, err)
		}
		return nil
	})
	submit("--id", "q-1", "--key", keys[1], "--payload", addPayload(1, ""))
	if j := c.showJob("q-1"); j["state"] != "queued" && j["state"] != "running" {
		t.Errorf("q-1 shown as %v", j)
	}
	if j := c.showJob("hang-1"); j["state"] != "running" || j["worker"] == nil {
		t.Logf("hang-1 shown as %v (its attempt may have ended)", j)
	}
	var wg sync.WaitGroup
	var qOut, hOut string
	var qErr, hErr error
	wg.Add(2)
	go func() { defer wg.Done(); qOut, qErr = c.coordinator("jobs", "cancel", "--wait", "20s", "q-1") }()
	go func() { defer wg.Done(); hOut, hErr = c.coordinator("jobs", "cancel", "--wait", "20s", "hang-1") }()
	wg.Wait()
	t.Logf("cancel of the queued q-1: %q %v", strings.TrimSpace(qOut), qErr)
	t.Logf("cancel of the running hang-1: %q %v", strings.TrimSpace(hOut), hErr)
	if hErr != nil || strings.TrimSpace(hOut) != "hang-1: cancelled" {
		t.Errorf("the running hang-1 was not cancelled once its attempt failed: %q %v", hOut, hErr)
	}
	// q-1 is cancelled unless its batch ran before the cancel reached it.
	q := c.showJob("q-1")
	switch {
	case qErr == nil && strings.TrimSpace(qOut) == "q-1: cancelled" && q["state"] == "cancelled":
	case qErr != nil && strings.Contains(qOut, "already ran") && q["state"] == "done":
	default:
		t.Errorf("q-1: cancel said %q %v, and it is %v", qOut, qErr, q["state"])
	}
	if out, err := c.coordinator("jobs", "cancel", "after-1"); err == nil || !strings.Contains(out, "already ran") {
		t.Errorf("a done job cancelled: %q %v", out, err)
	}
	if out, err := c.coordinator("jobs", "cancel", "nope-1"); err == nil || !strings.Contains(out, "no such job") {
		t.Errorf("an unknown job cancelled: %q %v", out, err)
	}

	// Paging through delayed jobs of every partition, a few at a time.
	var want []string
	for i := range 30 {
		id := fmt.Sprintf("dl-%02d", i)
		want = append(want, id)
		submit("--id", id, "--key", fmt.Sprintf("dk%d", i), "--in", "1h", "--payload", addPayload(1, ""))
	}
	var got []string
	req := &workerpb.ListJobsRequest{State: workerpb.JobResult_DELAYED, Limit: 4}
	for pages := 1; ; pages++ {
		resp, err := cl.ListJobs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range resp.Jobs {
			got = append(got, j.Id)
		}
		if resp.Next == "" {
			t.Logf("%d delayed jobs in %d pages of 4", len(got), pages)
			break
		}
		req.After = resp.Next
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("delayed jobs listed %v, want %v", got, want)
	}
	if out, err := c.coordinator("jobs", "list", "--state", "done", "--handler", "bucket.credit"); err != nil || !strings.Contains(out, "after-1~0") {
		t.Errorf("jobs list --state done --handler bucket.credit: %q %v", out, err)
	}
}

// TestCancelRacesCommits: 1,000 jobs on five keys, each cancelled right
// after its submission while three workers run them. Every job ends
// either done or cancelled, never both and never neither: the accounts
// count exactly the jobs done, their credits too, no job commits twice
// (the audit), each key's jobs that ran committed in submission order,
// each cancel's answer agrees with how its job ended, and jobs list pages
// through the done and the cancelled ones, each once.
func TestCancelRacesCommits(t *testing.T) {
	const (
		P       = 8
		keys    = 5
		perKey  = 200
		chunk   = 10
		workers = 3
	)
	c := newCluster(t, "--partitions", fmt.Sprint(P), "--audit", "--retry-backoff", "20ms", "--retry-backoff-max", "200ms")
	plugin := chaosPlugin(t, c)
	for i := 1; i <= workers; i++ {
		// A third of the attempts fail: a key's jobs wait behind its
		// retrying ones, so cancels meet jobs queued, waiting and
		// retrying, as well as running and done.
		c.startWith(fmt.Sprintf("w%d", i), plugin, "CORRAL_CHAOS_SEED=7", "CORRAL_CHAOS_FAIL_PERCENT=30")
	}
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	type answer struct {
		r   *workerpb.CancelResult
		err error
	}
	var mu sync.Mutex
	answers := map[string]answer{}
	sem := make(chan struct{}, 32)
	var cancels sync.WaitGroup
	var submits sync.WaitGroup
	var ids []string
	for k := range keys {
		for s := 1; s <= perKey; s++ {
			ids = append(ids, fmt.Sprintf("race-k%d-%03d", k, s))
		}
	}
	start := time.Now()
	for k := range keys {
		submits.Add(1)
		go func() {
			defer submits.Done()
			key := fmt.Sprintf("acct-%d", k)
			// A few jobs a submission, each cancelled right after it: the
			// cancels meet their jobs queued, in a batch in flight, or done.
			for s := 1; s <= perKey; s += chunk {
				var jobs []*workerpb.Job
				for i := s; i < s+chunk; i++ {
					j := addJob(fmt.Sprintf("race-k%d-%03d", k, i), key, int64(i), 1, "bk", "")
					j.MaxAttempts = 30 // none is dead-lettered
					jobs = append(jobs, j)
				}
				submitWithRetry(ctx, t, cl, jobs)
				for _, j := range jobs {
					sem <- struct{}{}
					cancels.Add(1)
					go func() {
						defer func() { <-sem; cancels.Done() }()
						rs, err := cl.Cancel(ctx, 10*time.Second, j.Id)
						a := answer{err: err}
						if err == nil && len(rs) == 1 {
							a.r = rs[0]
						}
						mu.Lock()
						answers[j.Id] = a
						mu.Unlock()
					}()
				}
			}
		}()
	}
	submits.Wait()
	cancels.Wait()
	t.Logf("1,000 submits and their cancels in %v", time.Since(start).Round(time.Millisecond))

	// Never neither: every job ends.
	final := map[string]workerpb.JobResult_State{}
	testenv.Eventually(t, 60*time.Second, func() error {
		rs, err := cl.Results(ctx, 0, ids...)
		if err != nil {
			return err
		}
		left := 0
		for _, r := range rs {
			final[r.Id] = r.State
			if r.State == workerpb.JobResult_QUEUED {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d jobs not finished", left)
		}
		return nil
	})
	doneBy := map[string]int{}
	maxSeq := map[string]int{}
	var done, cancelled []string
	var saidCancelled, saidRan, saidPending, failed int
	for _, id := range ids {
		var k, s int
		fmt.Sscanf(id, "race-k%d-%d", &k, &s)
		key := fmt.Sprintf("acct-%d", k)
		switch final[id] {
		case workerpb.JobResult_DONE:
			done = append(done, id)
			doneBy[key]++
			maxSeq[key] = max(maxSeq[key], s)
		case workerpb.JobResult_CANCELLED:
			cancelled = append(cancelled, id)
		default:
			t.Errorf("%s ended %v, want done or cancelled", id, final[id])
		}
		a := answers[id]
		switch {
		case a.err != nil || a.r == nil:
			failed++
			t.Errorf("cancel of %s: %v", id, a.err)
		case a.r.Pending:
			saidPending++
		case a.r.Cancelled || a.r.State == workerpb.JobResult_CANCELLED:
			saidCancelled++
			if final[id] != workerpb.JobResult_CANCELLED {
				t.Errorf("cancel of %s said cancelled, but it ended %v", id, final[id])
			}
		case a.r.State == workerpb.JobResult_DONE:
			saidRan++
			if final[id] != workerpb.JobResult_DONE {
				t.Errorf("cancel of %s said it ran, but it ended %v", id, final[id])
			}
		default:
			t.Errorf("cancel of %s answered %+v", id, a.r)
		}
	}
	t.Logf("ran %d, cancelled %d; cancels answered: cancelled %d, already ran %d, pending %d, failed %d",
		len(done), len(cancelled), saidCancelled, saidRan, saidPending, failed)
	if len(cancelled) == 0 || len(done) == 0 {
		t.Errorf("no race: %d ran and %d were cancelled", len(done), len(cancelled))
	}

	// Never both: the accounts count exactly the jobs done, in order.
	for k := range keys {
		key := fmt.Sprintf("acct-%d", k)
		st, err := cl.State(ctx, "account", key)
		if err != nil {
			t.Fatal(err)
		}
		var a chaosAccount
		if st[0].Found {
			json.Unmarshal(st[0].State, &a)
		}
		if a.Count != int64(doneBy[key]) || a.TotalCents != int64(doneBy[key]) || a.OutOfOrder != 0 || a.LastSeq != int64(maxSeq[key]) {
			t.Errorf("%s: %+v, want count and total %d, last seq %d, none out of order", key, a, doneBy[key], maxSeq[key])
		}
	}
	// Each job done emitted one credit, applied once unless it failed four
	// times (the credit handler's attempts) and was dead-lettered.
	credits := make([]string, len(done))
	for i, id := range done {
		credits[i] = id + "~0"
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		rs, err := cl.Results(ctx, 0, credits...)
		if err != nil {
			return err
		}
		applied := 0
		for _, r := range rs {
			switch r.State {
			case workerpb.JobResult_DONE:
				applied++
			case workerpb.JobResult_DEAD:
			default:
				return fmt.Errorf("credit %s is %v", r.Id, r.State)
			}
		}
		st, err := cl.State(ctx, "bucket", "bk")
		if err != nil || !st[0].Found {
			return fmt.Errorf("bucket bk: %v %v", st, err)
		}
		var b struct{ Count int64 }
		json.Unmarshal(st[0].State, &b)
		if b.Count != int64(applied) {
			return fmt.Errorf("bucket bk counts %d credits, want %d", b.Count, applied)
		}
		return nil
	})
	log, err := audit.Read(ctx, c.redis.Client(t), P)
	if err != nil {
		t.Fatal(err)
	}
	chk := log.Check()
	if !chk.OK() || !chk.Complete() {
		t.Errorf("audit: %+v", chk)
	}
	for _, id := range cancelled {
		if chk.Count[id] != 0 {
			t.Errorf("the cancelled %s committed %d times", id, chk.Count[id])
		}
	}
	for _, id := range done {
		if chk.Count[id] != 1 {
			t.Errorf("the done %s committed %d times", id, chk.Count[id])
		}
		if chk.Count[id+"~0"] > 1 {
			t.Errorf("the credit of %s committed %d times", id, chk.Count[id+"~0"])
		}
	}

	// jobs list pages through both, across the partitions, each job once.
	for state, want := range map[workerpb.JobResult_State][]string{workerpb.JobResult_DONE: done, workerpb.JobResult_CANCELLED: cancelled} {
		seen := map[string]int{}
		req := &workerpb.ListJobsRequest{State: state, Limit: 37}
		pages := 0
		for {
			pages++
			resp, err := cl.ListJobs(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range resp.Jobs {
				if strings.HasPrefix(j.Id, "race-") && !strings.Contains(j.Id, "~") { // not their credits
					seen[j.Id]++
				}
			}
			if resp.Next == "" {
				break
			}
			req.After = resp.Next
		}
		for _, id := range want {
			if seen[id] != 1 {
				t.Errorf("%s listed %d times among the %s jobs", id, seen[id], client.StateName(state))
			}
		}
		if len(seen) != len(want) {
			t.Errorf("%d %s jobs listed, want %d", len(seen), client.StateName(state), len(want))
		}
		t.Logf("%d %s jobs listed in %d pages of 37", len(seen), client.StateName(state), pages)
	}
}
