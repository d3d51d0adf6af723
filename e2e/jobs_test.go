package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/testenv"
)

// chaosPlugin builds the chaos test plugin next to the other binaries.
func chaosPlugin(t *testing.T, c *cluster) string {
	t.Helper()
	path := filepath.Join(c.bins, "chaos-plugin")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", path, "./examples/donations/chaosplugin")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build chaos plugin: %v\n%s", err, out)
	}
	return path
}

// startWith launches worker id with the given plugin and extra environment
// and waits until Consul lists it as healthy.
func (c *cluster) startWith(id, plugin string, env ...string) {
	c.t.Helper()
	c.launch(id, workerRun{plugin: plugin, env: env})
}

type chaosAccount struct {
	TotalCents int64 `json:"total_cents"`
	Count      int64 `json:"count"`
	LastSeq    int64 `json:"last_seq"`
	OutOfOrder int64 `json:"out_of_order"`
}

func addJob(id, account string, seq, cents int64, bucket, poison string) *workerpb.Job {
	p := map[string]any{"amount_cents": cents, "seq": seq, "bucket": bucket}
	if poison != "" {
		p["poison"] = poison
	}
	b, _ := json.Marshal(p)
	return &workerpb.Job{Id: id, Handler: "account.add", Key: account, Payload: b}
}

// TestJobsCLI: bad input is refused with a one-line reason and nothing is
// written; --wait prints the result; --in delays; result reads it later;
// a rejected job lands in the dead-letter store, which lists, shows,
// replays and purges.
func TestJobsCLI(t *testing.T) {
	c := newCluster(t, "--partitions", "8", "--retry-backoff", "20ms", "--retry-backoff-max", "100ms")
	c.startWith("w1", chaosPlugin(t, c))
	cl := c.client()
	big := `{"amount_cents":1,"seq":1,"bucket":"b","pad":"` + strings.Repeat("x", 1<<20) + `"}`
	bad := map[string][]string{
		"empty key":       {"--handler", "account.add", "--key", "", "--payload", `{}`},
		"oversized key":   {"--handler", "account.add", "--key", strings.Repeat("k", 2000), "--payload", `{"amount_cents":1,"seq":1,"bucket":"b"}`},
		"unknown handler": {"--handler", "nope.run", "--key", "a", "--payload", `{}`},
		"not JSON":        {"--handler", "account.add", "--key", "a", "--payload", `{amount`},
		"wrong shape":     {"--handler", "account.add", "--key", "a", "--payload", `{"amount_cents":"ten","seq":1,"bucket":"b"}`},
		"missing field":   {"--handler", "account.add", "--key", "a", "--payload", `{"amount_cents":1,"seq":1}`},
		"invalid id":      {"--handler", "account.add", "--key", "a", "--payload", `{"amount_cents":1,"seq":1,"bucket":"b"}`, "--id", "no spaces"},
		"attempts limit":  {"--handler", "account.add", "--key", "a", "--payload", `{"amount_cents":1,"seq":1,"bucket":"b"}`, "--max-attempts", "1000"},
		"bad --at":        {"--handler", "account.add", "--key", "a", "--payload", `{"amount_cents":1,"seq":1,"bucket":"b"}`, "--at", "tomorrow"},
	}
	names := make([]string, 0, len(bad))
	for n := range bad {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		_, err := c.coordinator(append([]string{"submit"}, bad[n]...)...)
		if err == nil {
			t.Errorf("%s: accepted", n)
			continue
		}
		msg := err.Error()
		if i := strings.LastIndex(msg, ": exit status 1: "); i >= 0 {
			msg = msg[i+len(": exit status 1: "):]
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: reason is not one line: %q", n, msg)
		}
		t.Logf("%-16s -> %.160s", n, msg)
	}
	// Over the payload limit (too long for a command line: sent as a file).
	bigFile := filepath.Join(t.TempDir(), "big.jsonl")
	os.WriteFile(bigFile, []byte(`{"id":"big","handler":"account.add","key":"a","payload":`+big+"}\n"), 0o644)
	if _, err := c.coordinator("submit", "--file", bigFile); err == nil || !strings.Contains(err.Error(), "line 1: rejected: payload too large") {
		t.Errorf("oversized payload: %.300v", err)
	}
	// A file with a malformed line: reported with its line number, the rest submitted.
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	os.WriteFile(file, []byte(`{"id":"f1","handler":"account.add","key":"fa","payload":{"amount_cents":5,"seq":1,"bucket":"fb"}}
{"id":"f2","handler":"account.add",
{"id":"f3","handler":"account.add","key":"fa","payload":{"amount_cents":7,"seq":2,"bucket":"fb"}}
`), 0o644)
	_, err := c.coordinator("submit", "--file", file)
	if err == nil || !strings.Contains(err.Error(), "line 2: malformed JSON") {
		t.Errorf("malformed line: %v", err)
	}
	_, err = c.coordinator("submit", "--file", file, "--on-error", "stop")
	if err == nil || !strings.Contains(err.Error(), "stopped at line 2") {
		t.Errorf("--on-error stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := cl.State(ctx, "account", "a"); err != nil || st[0].Found {
		t.Errorf("a rejected job wrote state: %v %v", st, err)
	}

	// --wait prints the handler's result.
	out, err := c.coordinator("submit", "--handler", "account.add", "--key", "w", "--id", "w-1", "--wait", "--timeout", "10s",
		"--payload", `{"amount_cents":250,"seq":1,"bucket":"b"}`)
	if err != nil || strings.TrimSpace(out) != `{"seq":1,"total_cents":250}` {
		t.Fatalf("submit --wait: %q %v", out, err)
	}
	// Same id, same content: a duplicate; other content: refused.
	if out, err := c.coordinator("submit", "--handler", "account.add", "--key", "w", "--id", "w-1", "--payload", `{"amount_cents":250,"seq":1,"bucket":"b"}`); err != nil || !strings.Contains(out, "duplicate") {
		t.Errorf("resubmission: %q %v", out, err)
	}
	if _, err := c.coordinator("submit", "--handler", "account.add", "--key", "w", "--id", "w-1", "--payload", `{"amount_cents":9,"seq":1,"bucket":"b"}`); err == nil {
		t.Error("same id with other content accepted")
	}
	// --in holds the job; result reads it once it ran.
	start := time.Now()
	if _, err := c.coordinator("submit", "--handler", "account.add", "--key", "d", "--id", "d-1", "--in", "2s",
		"--payload", `{"amount_cents":1,"seq":1,"bucket":"b"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.coordinator("result", "d-1"); err == nil || !strings.Contains(err.Error(), "not finished") {
		t.Errorf("delayed job finished early: %v", err)
	}
	out, err = c.coordinator("result", "--wait", "10s", "d-1")
	if err != nil || !strings.Contains(out, `"total_cents":1`) {
		t.Fatalf("result of delayed job: %q %v", out, err)
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("delayed job ran after %v, before its 2s", el)
	}
	t.Logf("delayed job (--in 2s) result read %v after submit", time.Since(start).Round(time.Millisecond))

	// A job failing for good is dead-lettered; dlq shows, replays, purges.
	if _, err := c.coordinator("submit", "--handler", "account.add", "--key", "r", "--id", "bad-1",
		"--payload", `{"amount_cents":1,"seq":1,"bucket":"b","poison":"reject"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.coordinator("result", "--wait", "10s", "bad-1"); err == nil || !strings.Contains(err.Error(), "dead-lettered") {
		t.Fatalf("result of rejected job: %v", err)
	}
	out, err = c.coordinator("dlq", "list")
	if err != nil || !strings.Contains(out, "bad-1") {
		t.Fatalf("dlq list: %q %v", out, err)
	}
	out, err = c.coordinator("dlq", "show", "bad-1")
	if err != nil || !strings.Contains(out, "rejected for good") {
		t.Fatalf("dlq show: %q %v", out, err)
	}
	if out, err := c.coordinator("dlq", "replay", "bad-1"); err != nil || strings.TrimSpace(out) != "replayed 1" {
		t.Fatalf("dlq replay: %q %v", out, err)
	}
	waitDead(t, ctx, cl, "bad-1")
	if out, err := c.coordinator("dlq", "purge", "--all"); err != nil || strings.TrimSpace(out) != "purged 1" {
		t.Fatalf("dlq purge: %q %v", out, err)
	}
	if out, _ := c.coordinator("dlq", "list"); strings.TrimSpace(out) != "" {
		t.Fatalf("dlq not empty after purge: %q", out)
	}
}

func waitDead(t *testing.T, ctx context.Context, cl *client.Client, id string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		dead, _, err := cl.DeadLetters(ctx, 0, "", id)
		if err != nil || len(dead) != 1 {
			return fmt.Errorf("job %s not dead-lettered again: %d dead letters of it, %v", id, len(dead), err)
		}
		return nil
	})
}

// TestPoisonDoesNotBlockOtherKeys: in a single partition, jobs that hang,
// panic or always fail reach the dead-letter store after their attempts;
// the other keys' jobs meanwhile commit (their latency is logged), and the
// poisoned key's later jobs wait for the poison, then run in order.
func TestPoisonDoesNotBlockOtherKeys(t *testing.T) {
	// A hang is its own case: the plugin host replaces a process that
	// missed its deadline, and nothing runs while the new one starts.
	t.Run("none", func(t *testing.T) { poisonRun(t) })
	t.Run("panic-and-fail", func(t *testing.T) { poisonRun(t, "panic", "fail") })
	t.Run("hang", func(t *testing.T) { poisonRun(t, "hang") })
}

func poisonRun(t *testing.T, kinds ...string) {
	c := newCluster(t, "--partitions", "1", "--retry-backoff", "50ms", "--retry-backoff-max", "200ms")
	c.startWith("w1", chaosPlugin(t, c))
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var poison []*workerpb.Job
	for _, k := range kinds {
		poison = append(poison, addJob(k+"-1", "p"+k, 1, 1, "b", k))
	}
	submitWithRetry(ctx, t, cl, poison)
	start := time.Now()
	var normal []*workerpb.Job
	submitted := map[string]time.Time{}
	for i := range 30 {
		normal = append(normal, addJob(fmt.Sprintf("n-%d", i), fmt.Sprintf("acct-%d", i%10), int64(i/10+1), 10, "b", ""))
	}
	// Later jobs of the poisoned keys must wait for the poison.
	for _, k := range kinds {
		normal = append(normal, addJob("after-"+k, "p"+k, 2, 5, "b", ""))
	}
	ids := make([]string, 0, len(normal)+len(poison))
	for _, j := range append(normal, poison...) {
		ids = append(ids, j.Id)
	}
	// Poll while submitting, so a job's latency is its own.
	var mu sync.Mutex
	finished := map[string]time.Time{}
	var rs []*workerpb.JobResult
	polled := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			got, err := cl.Results(ctx, 0, ids...)
			if err != nil {
				polled <- err
				return
			}
			now := time.Now()
			mu.Lock()
			rs = got
			for _, r := range got {
				if _, ok := finished[r.Id]; !ok && (r.State == workerpb.JobResult_DONE || r.State == workerpb.JobResult_DEAD) {
					finished[r.Id] = now
				}
			}
			n := len(finished)
			mu.Unlock()
			if n == len(ids) {
				polled <- nil
				return
			}
			time.Sleep(10 * time.Millisecond) // the poll interval, which bounds how finely a latency is measured
		}
		polled <- ctx.Err()
	}()
	for _, j := range normal {
		mu.Lock()
		submitted[j.Id] = time.Now()
		mu.Unlock()
		submitWithRetry(ctx, t, cl, []*workerpb.Job{j})
		time.Sleep(20 * time.Millisecond) // a trickle, so jobs keep arriving while the poison is retried
	}
	if err := <-polled; err != nil {
		t.Fatalf("polling results: %v", err)
	}
	if len(finished) < len(ids) {
		t.Fatalf("%d of %d jobs finished", len(finished), len(ids))
	}
	var lat []time.Duration
	for _, r := range rs {
		want := workerpb.JobResult_DONE
		if strings.HasSuffix(r.Id, "-1") && !strings.HasPrefix(r.Id, "n-") {
			want = workerpb.JobResult_DEAD
			if r.Attempts != 4 {
				t.Errorf("%s dead after %d attempts, want 4", r.Id, r.Attempts)
			}
		}
		if r.State != want {
			t.Errorf("%s: %v (%s), want %v", r.Id, r.State, r.Error, want)
		}
		if strings.HasPrefix(r.Id, "n-") {
			lat = append(lat, finished[r.Id].Sub(submitted[r.Id]))
		}
	}
	poisonIDs := make([]string, len(kinds))
	var lastDead time.Time
	for i, k := range kinds {
		poisonIDs[i] = k + "-1"
		if finished["after-"+k].Before(finished[k+"-1"]) {
			t.Errorf("after-%s finished before its key's poison", k)
		}
		if finished[k+"-1"].After(lastDead) {
			lastDead = finished[k+"-1"]
		}
	}
	dead, _, err := cl.DeadLetters(ctx, 0, "", poisonIDs...)
	if err != nil || len(dead) != len(kinds) {
		t.Fatalf("dead letters %v %v", dead, err)
	}
	for _, d := range dead {
		if len(d.Errors) != 4 {
			t.Errorf("%s error history has %d entries, want 4: %q", d.Id, len(d.Errors), d.Errors)
		}
		t.Logf("dead %s: %q", d.Id, d.Errors[len(d.Errors)-1])
	}
	var states []*workerpb.EntityState
	if states, err = cl.State(ctx, "account", "acct-0", "acct-9"); err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		var a chaosAccount
		json.Unmarshal(s.State, &a)
		if a.Count != 3 || a.OutOfOrder != 0 {
			t.Errorf("account %s: %+v, want 3 jobs in order", s.Key, a)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	deadAfter := "-"
	if len(kinds) > 0 {
		deadAfter = lastDead.Sub(start).Round(time.Millisecond).String()
	}
	t.Logf("poison %v: other keys of the partition: %d jobs, latency p50 %v p90 %v max %v; poison dead-lettered %s after submit",
		kinds, len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*9/10].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond),
		deadAfter)
}

// TestChaosUnderKills: a handler that fails at random (seeded), poison jobs
// and cross-partition emits, while a worker is SIGKILLed and another joins:
// every account and bucket total is exact, the dead letters are exactly the
// poison, and no account saw its jobs commit out of order.
func TestChaosUnderKills(t *testing.T) {
	c := newCluster(t, "--partitions", "16", "--audit", "--retry-backoff", "20ms", "--retry-backoff-max", "200ms")
	plugin := chaosPlugin(t, c)
	env := []string{"CORRAL_CHAOS_SEED=7", "CORRAL_CHAOS_FAIL_PERCENT=20"}
	for _, id := range []string{"w1", "w2", "w3"} {
		c.startWith(id, plugin, env...)
	}
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const n, accounts, buckets = 1200, 40, 6
	rng := rand.New(rand.NewPCG(7, 7))
	poisonKinds := []string{"fail", "panic", "hang", "reject", "fail", "reject"}
	poisonAt := map[int]string{}
	for i, k := range poisonKinds {
		poisonAt[100+i*180] = k
	}
	seq := map[string]int64{}
	wantAcct := map[string]chaosAccount{}
	wantBucket := map[string]int64{}
	wantBucketCount := map[string]int64{}
	var jobs []*workerpb.Job
	var poisonIDs []string
	for i := range n {
		acct := fmt.Sprintf("acct-%d", rng.IntN(accounts))
		bucket := fmt.Sprintf("bucket-%d", rng.IntN(buckets))
		cents := int64(1 + rng.IntN(1000))
		seq[acct]++
		id := fmt.Sprintf("c-%d", i)
		kind := poisonAt[i]
		jobs = append(jobs, addJob(id, acct, seq[acct], cents, bucket, kind))
		if kind != "" {
			poisonIDs = append(poisonIDs, id)
			continue
		}
		a := wantAcct[acct]
		a.TotalCents += cents
		a.Count++
		wantAcct[acct] = a
		wantBucket[bucket] += cents
		wantBucketCount[bucket]++
	}
	start := time.Now()
	const batch = 25
	for i := 0; i < len(jobs); i += batch {
		if i == len(jobs)/2 {
			t.Logf("SIGKILL w2 after %d submissions; w4 joins", i)
			c.signal("w2", syscall.SIGKILL)
			go c.startWith("w4", plugin, env...)
		}
		submitWithRetry(ctx, t, cl, jobs[i:min(i+batch, len(jobs))])
	}
	t.Logf("submitted %d jobs (%d poison) in %v", n, len(poisonIDs), time.Since(start).Round(time.Millisecond))

	acctKeys := make([]string, 0, len(wantAcct))
	for k := range wantAcct {
		acctKeys = append(acctKeys, k)
	}
	bucketKeys := make([]string, 0, len(wantBucket))
	for k := range wantBucket {
		bucketKeys = append(bucketKeys, k)
	}
	var report string
	deadline, _ := ctx.Deadline()
	testenv.Eventually(t, time.Until(deadline), func() error {
		ok, rep := chaosCheck(ctx, cl, acctKeys, bucketKeys, wantAcct, wantBucket, wantBucketCount, len(poisonIDs))
		if ctx.Err() == nil {
			report = rep // what was seen before the deadline cut the reads short
		}
		if !ok {
			return fmt.Errorf("did not converge: %s", report)
		}
		return nil
	})
	t.Logf("converged %v after the first submit: %s", time.Since(start).Round(time.Millisecond), report)
	var outOfOrder int64
	states, err := cl.State(ctx, "account", acctKeys...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		var a chaosAccount
		json.Unmarshal(s.State, &a)
		outOfOrder += a.OutOfOrder
	}
	if outOfOrder != 0 {
		t.Errorf("%d jobs committed out of their key's order", outOfOrder)
	}
	dead, _, err := cl.DeadLetters(ctx, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	var deadIDs []string
	for _, d := range dead {
		deadIDs = append(deadIDs, d.Id)
	}
	sort.Strings(deadIDs)
	sort.Strings(poisonIDs)
	if strings.Join(deadIDs, ",") != strings.Join(poisonIDs, ",") {
		t.Errorf("dead letters %v, want exactly the poison %v", deadIDs, poisonIDs)
	}
	checkAuditOnce(t, c)
}

// chaosCheck compares the committed totals with the expected ones.
func chaosCheck(ctx context.Context, cl *client.Client, acctKeys, bucketKeys []string, wantAcct map[string]chaosAccount,
	wantBucket, wantBucketCount map[string]int64, wantDead int) (bool, string) {
	accts, err := cl.State(ctx, "account", acctKeys...)
	if err != nil {
		return false, err.Error()
	}
	bks, err := cl.State(ctx, "bucket", bucketKeys...)
	if err != nil {
		return false, err.Error()
	}
	dead, _, err := cl.DeadLetters(ctx, 1000, "")
	if err != nil {
		return false, err.Error()
	}
	wrongA, wrongB := 0, 0
	var jobs, credits int64
	for i, s := range accts {
		var a chaosAccount
		json.Unmarshal(s.State, &a)
		jobs += a.Count
		w := wantAcct[acctKeys[i]]
		if a.TotalCents != w.TotalCents || a.Count != w.Count {
			wrongA++
		}
	}
	for i, s := range bks {
		var b struct {
			TotalCents int64 `json:"total_cents"`
			Count      int64 `json:"count"`
		}
		json.Unmarshal(s.State, &b)
		credits += b.Count
		if b.TotalCents != wantBucket[bucketKeys[i]] || b.Count != wantBucketCount[bucketKeys[i]] {
			wrongB++
		}
	}
	var depth int64
	if st, err := cl.Status(ctx); err == nil {
		depth = st.TotalDepth
	}
	rep := fmt.Sprintf("waiting %d, jobs applied %d, credits applied %d, accounts wrong %d/%d, buckets wrong %d/%d, dead letters %d (want %d)",
		depth, jobs, credits, wrongA, len(acctKeys), wrongB, len(bucketKeys), len(dead), wantDead)
	return wrongA == 0 && wrongB == 0 && len(dead) == wantDead, rep
}

// checkAuditOnce: no job id was committed (applied or dead-lettered) twice.
func checkAuditOnce(t *testing.T, c *cluster) {
	t.Helper()
	rdb := c.redis.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "corral:{p*}:audit").Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		msgs, err := rdb.XRange(ctx, k, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			id, _ := m.Values["id"].(string)
			if seen[id] {
				t.Errorf("job %s finished twice", id)
			}
			seen[id] = true
		}
	}
	t.Logf("audit: %d jobs finished once each", len(seen))
}
