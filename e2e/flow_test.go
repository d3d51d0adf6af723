package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// flowPlugin builds the flow-control test plugin next to the other
// binaries.
func flowPlugin(t *testing.T, c *cluster) string {
	t.Helper()
	path := filepath.Join(c.bins, "flow-plugin")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", path, "./e2e/testdata/flow")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build flow plugin: %v\n%s", err, out)
	}
	return path
}

// flowCluster starts n workers running the flow plugin, which measures
// itself in the cluster's Redis.
func flowCluster(t *testing.T, n int, flags ...string) (*cluster, *redis.Client) {
	c := newCluster(t, append([]string{"--metrics", "127.0.0.1:0"}, flags...)...)
	plugin := flowPlugin(t, c)
	for i := 1; i <= n; i++ {
		c.launch(fmt.Sprintf("w%d", i), workerRun{plugin: plugin, env: []string{"FLOWTEST_REDIS=" + c.redis.Addr}})
	}
	return c, c.redis.Client(t)
}

// ranAt reads the unix ms a handler's jobs ran at, sorted.
func ranAt(t *testing.T, rdb *redis.Client, handler string) []int64 {
	t.Helper()
	vals, err := rdb.LRange(context.Background(), "flowtest:ran:"+handler, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(vals))
	for i, v := range vals {
		out[i], _ = strconv.ParseInt(v, 10, 64)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// submitJobs submits jobs in order, with ids, so a batch sent again adds
// nothing twice. A worker that does not know yet that a new member serves
// the handlers (its view of Consul lags the member's start by a moment)
// refuses the jobs that member owns: the batch goes again.
func submitJobs(t *testing.T, c *cluster, jobs []*workerpb.Job) {
	t.Helper()
	cl := c.client()
	for i, j := range jobs {
		if j.Id == "" {
			j.Id = fmt.Sprintf("%s-%s-%d", j.Handler, j.Key, i)
		}
	}
	for len(jobs) > 0 {
		n := min(len(jobs), 500)
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			res, err := cl.Submit(ctx, jobs[:n])
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			refused := ""
			for _, r := range res {
				if r.Error != "" {
					refused = fmt.Sprintf("job %s rejected: %s", r.Id, r.Error)
				}
			}
			if refused == "" {
				break
			}
			if !strings.Contains(refused, "serve") || time.Now().After(deadline) {
				t.Fatal(refused)
			}
			time.Sleep(200 * time.Millisecond)
		}
		jobs = jobs[n:]
	}
}

// waitFlowInForce waits until each of n healthy workers says on its
// /metrics that it applies the flow control of handler at value.
func waitFlowInForce(t *testing.T, c *cluster, n int, handler, control string, value float64) {
	t.Helper()
	series := fmt.Sprintf(`corral_flow_in_force{control=%q,handler=%q}`, control, handler)
	testenv.Eventually(t, 30*time.Second, func() error {
		entries, _, err := c.consul.Client(t).Health().Service(discovery.DefaultService, "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) < n {
			return fmt.Errorf("%d healthy workers of %d", len(entries), n)
		}
		for _, e := range entries {
			addr := e.Service.Meta["metrics"]
			if addr == "" {
				return fmt.Errorf("worker %s publishes no metrics address", e.Service.ID)
			}
			if got := scrape(t, addr)[series]; got != value {
				return fmt.Errorf("worker %s: %s = %v, want %v", e.Service.ID, series, got, value)
			}
		}
		return nil
	})
}

// waitSeqApplied waits until each of seq.apply's keys k0…k(keysN-1) has
// applied its perKey jobs, and fails at once if one applied more.
func waitSeqApplied(t *testing.T, cl *client.Client, keysN, perKey int, within time.Duration) {
	t.Helper()
	all := make([]string, keysN)
	for k := range all {
		all[k] = fmt.Sprintf("k%d", k)
	}
	testenv.Eventually(t, within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		states, err := cl.State(ctx, "seq", all...)
		if err != nil {
			return err
		}
		for _, s := range states {
			var a struct{ Last, Count int }
			json.Unmarshal(s.State, &a)
			if a.Last != perKey {
				return fmt.Errorf("key %s at %d of %d", s.Key, a.Last, perKey)
			}
			if a.Count != perKey {
				t.Fatalf("key %s applied %d jobs for %d", s.Key, a.Count, perKey)
			}
		}
		return nil
	})
}

func waitCount(t *testing.T, rdb *redis.Client, key string, want int64, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		n, err := rdb.LLen(context.Background(), key).Result()
		if err != nil || n < want {
			return fmt.Errorf("%s: %d of %d (%v)", key, n, want, err)
		}
		return nil
	})
}

// TestFlowConcurrencyLimit: with a concurrency limit of 2 on a handler
// that sleeps, never more than 2 of its calls are in flight in the
// cluster, as the plugin itself counts across its three processes, and
// another handler's jobs all run while the slow ones still wait.
func TestFlowConcurrencyLimit(t *testing.T) {
	c, rdb := flowCluster(t, 3)
	out, err := c.coordinator("handler", "limit", "slow.run", "--concurrency", "2")
	if err != nil || !strings.Contains(out, "slow.run: concurrency 2") {
		t.Fatalf("limit: %q %v", out, err)
	}
	waitFlowInForce(t, c, 3, "slow.run", "concurrency", 2)
	const slowN, fastN = 40, 400
	var jobs []*workerpb.Job
	for i := range slowN {
		jobs = append(jobs, &workerpb.Job{Handler: "slow.run", Key: fmt.Sprintf("s%d", i), Payload: []byte(`{"ms":250}`)})
	}
	for i := range fastN {
		jobs = append(jobs, &workerpb.Job{Handler: "fast.run", Key: fmt.Sprintf("f%d", i), Payload: []byte(`{}`)})
	}
	start := time.Now()
	submitJobs(t, c, jobs)
	waitCount(t, rdb, "flowtest:ran:fast.run", fastN, 60*time.Second)
	fastDone := time.Since(start)
	slowThen, _ := rdb.LLen(context.Background(), "flowtest:ran:slow.run").Result()
	st, _ := c.coordinator("status")
	waitCount(t, rdb, "flowtest:ran:slow.run", slowN, 90*time.Second)
	slowDone := time.Since(start)
	peakF, _ := rdb.ZScore(context.Background(), "flowtest:peak", "peak").Result()
	peak := int(peakF)
	t.Logf("fast jobs done in %v (slow ones done then: %d of %d); slow jobs done in %v; peak in flight %d", fastDone, slowThen, slowN, slowDone, peak)
	if peak > 2 {
		t.Fatalf("%d slow.run calls in flight at once, over the limit of 2", peak)
	}
	if peak < 2 {
		t.Fatalf("slow.run never had 2 calls in flight (peak %d): the test proves nothing", peak)
	}
	if min := time.Duration(slowN/2) * 250 * time.Millisecond; slowDone < min {
		t.Fatalf("%d slow jobs of 250ms at 2 at a time done in %v, under %v", slowN, slowDone, min)
	}
	if slowThen >= slowN {
		t.Fatalf("the fast jobs finished only after the slow ones (%v): the limit held them back", fastDone)
	}
	if !strings.Contains(st, "slow.run: concurrency 2") {
		t.Fatalf("status does not show the limit:\n%s", st)
	}
	if n, _ := rdb.Get(context.Background(), "flowtest:inflight").Int(); n != 0 {
		t.Fatalf("%d calls still counted in flight", n)
	}
	// Every slot was given back.
	if n, _ := rdb.ZCard(context.Background(), keys.ForHandler("slow.run").Slots()).Result(); n != 0 {
		t.Fatalf("%d slots still held", n)
	}
}

// TestFlowRateLimit: at a rate limit of 100/s, a backlog runs at 100 jobs
// a second, within 5%, measured over 20 s after the first burst.
func TestFlowRateLimit(t *testing.T) {
	c, rdb := flowCluster(t, 2)
	if out, err := c.coordinator("handler", "limit", "tick.run", "--rate", "100"); err != nil || !strings.Contains(out, "rate 100/s, burst 100") {
		t.Fatalf("limit: %q %v", out, err)
	}
	waitFlowInForce(t, c, 2, "tick.run", "rate", 100)
	const n = 2500
	var jobs []*workerpb.Job
	for i := range n {
		jobs = append(jobs, &workerpb.Job{Handler: "tick.run", Key: fmt.Sprintf("t%d", i%300), Payload: []byte(`{}`)})
	}
	submitJobs(t, c, jobs)
	testenv.Eventually(t, 60*time.Second, func() error {
		ts := ranAt(t, rdb, "tick.run")
		if len(ts) == 0 || ts[len(ts)-1]-ts[0] < 23_000 {
			return fmt.Errorf("%d ticks so far", len(ts))
		}
		return nil
	})
	ts := ranAt(t, rdb, "tick.run")
	from := ts[0] + 2000 // past the first second's burst
	to := from + 20_000
	count := 0
	for _, v := range ts {
		if v >= from && v < to {
			count++
		}
	}
	rate := float64(count) / 20
	t.Logf("%d ticks in 20 s: %.1f/s (%d in all so far)", count, rate, len(ts))
	if rate < 95 || rate > 105 {
		t.Fatalf("measured %.1f jobs/s at a limit of 100/s", rate)
	}
}

// TestFlowPauseResume: a paused handler's jobs wait, spending no attempt,
// while another handler's go on; resumed, every job is applied once and
// in per-key order.
func TestFlowPauseResume(t *testing.T) {
	c, rdb := flowCluster(t, 2)
	if out, err := c.coordinator("handler", "pause", "seq.apply"); err != nil || !strings.Contains(out, "seq.apply: paused since") {
		t.Fatalf("pause: %q %v", out, err)
	}
	waitFlowInForce(t, c, 2, "seq.apply", "paused", 1)
	const keysN, perKey = 50, 20
	var jobs []*workerpb.Job
	for n := 1; n <= perKey; n++ {
		for k := range keysN {
			jobs = append(jobs, &workerpb.Job{Handler: "seq.apply", Key: fmt.Sprintf("k%d", k), Payload: []byte(fmt.Sprintf(`{"n":%d}`, n))})
		}
	}
	for i := range 100 {
		jobs = append(jobs, &workerpb.Job{Handler: "fast.run", Key: fmt.Sprintf("f%d", i), Payload: []byte(`{}`)})
	}
	submitJobs(t, c, jobs)
	waitCount(t, rdb, "flowtest:ran:fast.run", 100, 30*time.Second)
	time.Sleep(2 * time.Second) // the paused jobs would run now if the pause did not hold
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	states, err := cl.State(ctx, "seq", "k0", "k1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Found {
			t.Fatalf("key %s of a paused handler applied: %s", s.Key, s.State)
		}
	}
	st, _ := c.coordinator("status")
	if !strings.Contains(st, "seq.apply: paused") {
		t.Fatalf("status does not show the pause:\n%s", st)
	}
	if out, err := c.coordinator("handler", "resume", "seq.apply"); err != nil || !strings.Contains(out, "flowing") {
		t.Fatalf("resume: %q %v", out, err)
	}
	resumed := time.Now()
	waitSeqApplied(t, cl, keysN, perKey, 60*time.Second)
	t.Logf("all applied %v after the resume", time.Since(resumed).Round(time.Millisecond))
	if bad, _ := rdb.SMembers(context.Background(), "flowtest:bad").Result(); len(bad) > 0 {
		t.Fatalf("out of order or twice: %v", bad)
	}
	if dead, _ := c.coordinator("dlq", "list"); strings.Contains(dead, "seq.apply") {
		t.Fatalf("dead letters after a pause:\n%s", dead)
	}
}

// TestFlowBackpressure: a submit --file of 500,000 jobs for a paused
// handler fills each partition to --max-queue-depth and no further while
// the command backs off; resumed, it completes, and every job is applied
// once, in per-key order.
func TestFlowBackpressure(t *testing.T) {
	const parts, depth, keysN, perKey = 4, 2000, 5000, 100
	c, rdb := flowCluster(t, 2, "--partitions", strconv.Itoa(parts), "--max-queue-depth", strconv.Itoa(depth))
	if _, err := c.coordinator("handler", "pause", "seq.apply"); err != nil {
		t.Fatal(err)
	}
	waitFlowInForce(t, c, 2, "seq.apply", "paused", 1)
	file := filepath.Join(c.dir, "jobs.jsonl")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for n := 1; n <= perKey; n++ {
		for k := range keysN {
			fmt.Fprintf(w, `{"handler":"seq.apply","key":"k%d","payload":{"n":%d}}`+"\n", k, n)
		}
	}
	w.Flush()
	f.Close()

	cmd := exec.Command(filepath.Join(c.bins, "coordinator"), "--consul", c.consul.Addr, "submit", "--file", file)
	cmd.Env = append(os.Environ(), c.coordinatorEnv(pki.RoleAdmin)...)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx := context.Background()
	depthOf := func() (total int64, most int64) {
		for p := range parts {
			k := keys.For(p)
			q, _ := rdb.XLen(ctx, k.Queue()).Result()
			b, _ := rdb.HLen(ctx, k.Bodies()).Result()
			total += q + b
			most = max(most, q+b)
		}
		return total, most
	}
	// The partitions fill up to their depth, then stay there.
	testenv.Eventually(t, 60*time.Second, func() error {
		if total, _ := depthOf(); total < parts*depth {
			return fmt.Errorf("%d jobs held of %d", total, parts*depth)
		}
		return nil
	})
	mem1, _ := rdb.Info(ctx, "memory").Result()
	for range 6 {
		select {
		case err := <-exited:
			t.Fatalf("submit --file exited while the handler was paused: %v\n%s\n%s", err, out.String(), errb.String())
		case <-time.After(500 * time.Millisecond):
		}
		if total, most := depthOf(); total > parts*depth || most > depth {
			t.Fatalf("partitions hold %d jobs (the fullest %d), over the limit of %d each", total, most, depth)
		}
		if n, _ := rdb.Exists(ctx, keys.For(0).State("seq", "k0"), keys.For(1).State("seq", "k0"), keys.For(2).State("seq", "k0"), keys.For(3).State("seq", "k0")).Result(); n > 0 {
			t.Fatalf("a job of the paused handler was applied")
		}
	}
	if !strings.Contains(errb.String(), "held back: partition") {
		t.Fatalf("the progress lines do not say the submission is held back:\n%s", errb.String())
	}
	t.Logf("held at %d jobs in Redis after %v; %s", parts*depth, time.Since(start).Round(time.Millisecond), usedMemory(mem1))
	if _, err := c.coordinator("handler", "resume", "seq.apply"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("submit --file: %v\n%s\n%s", err, out.String(), errb.String())
		}
	case <-time.After(8 * time.Minute):
		t.Fatalf("submit --file did not finish after the resume:\n%s", errb.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("submitted %d,", keysN*perKey)) {
		t.Fatalf("summary: %s", out.String())
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	t.Logf("submit --file done %v after the start: %s; its last progress line: %s", time.Since(start).Round(time.Millisecond),
		strings.TrimSpace(out.String()), lines[len(lines)-1])
	cl := c.client()
	waitSeqApplied(t, cl, keysN, perKey, 6*time.Minute)
	if bad, _ := rdb.SMembers(ctx, "flowtest:bad").Result(); len(bad) > 0 {
		t.Fatalf("out of order or twice: %v", bad[:min(len(bad), 10)])
	}
	t.Logf("%d jobs applied once, in order, %v after the start", keysN*perKey, time.Since(start).Round(time.Millisecond))
}

func usedMemory(info string) string {
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "used_memory_human:") {
			return "Redis " + strings.TrimSpace(l)
		}
	}
	return ""
}

// TestFlowUnderRedisACL: pausing, limiting, waking and refusing at a full
// queue all run with the worker's least-privilege Redis user: a run of
// donations under a concurrency and rate limit, with their campaign
// credits paused until some partitions are full, ends with every total
// right and no command refused by Redis.
func TestFlowUnderRedisACL(t *testing.T) {
	lc := newLockedCluster(t, "--partitions", "4", "--max-queue-depth", "300", "--metrics", "127.0.0.1:0")
	c := lc.cluster
	admin := c.redis.Client(t)
	t.Cleanup(func() {
		if t.Failed() {
			checkNoACLDenials(t, admin)
		}
	})
	c.start("w1")
	c.start("w2")
	for _, args := range [][]string{
		{"handler", "limit", "donor.donate", "--concurrency", "2", "--rate", "300", "--burst", "50"},
		{"handler", "pause", "campaign.credit"},
	} {
		if out, err := c.coordinator(args...); err != nil {
			t.Fatalf("%v: %v (%s)", args, err, out)
		}
	}
	waitFlowInForce(t, c, 2, "donor.donate", "concurrency", 2)
	waitFlowInForce(t, c, 2, "campaign.credit", "paused", 1)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jobs, exp := workload.Generate(workload.Spec{Seed: 11, Donations: 1500, Donors: 200, Campaigns: 6})
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		submitWithRetry(ctx, t, cl, jobs)
	}()
	// The credits pile up in their campaigns' partitions until the
	// donations there are refused.
	testenv.Eventually(t, time.Minute, func() error {
		for p := range 4 {
			k := keys.For(p)
			q, _ := admin.XLen(ctx, k.Queue()).Result()
			b, _ := admin.HLen(ctx, k.Bodies()).Result()
			if q+b >= 300 {
				return nil
			}
		}
		return errors.New("no partition full yet")
	})
	out, err := c.coordinator("status")
	if err != nil || !strings.Contains(out, "campaign.credit: paused") || !strings.Contains(out, "donor.donate: concurrency 2") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"handler", "resume", "campaign.credit"}, {"handler", "limit", "donor.donate", "--clear"}} {
		if out, err := c.coordinator(args...); err != nil {
			t.Fatalf("%v: %v (%s)", args, err, out)
		}
	}
	<-submitted
	rep, err := workload.WaitFor(ctx, cl, exp)
	if err != nil || !rep.OK() {
		t.Fatalf("totals after flow control with the least-privilege Redis user: %s %v", rep, err)
	}
	t.Logf("%s", rep)
	checkNoACLDenials(t, admin)
}
