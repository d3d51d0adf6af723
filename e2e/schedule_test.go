package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestScheduleTicksOnceAcrossFaults: two schedules fire every second, one
// with catch-up all, one with none, from a partition of w1, while w1 is
// SIGKILLed and restarted, then the schedule's owner is SIGSTOPped past its
// lease in the middle of a tick script, which is delivered to Redis after
// the others took over and must be refused, then woken. Then the first schedule is paused and
// resumed, the second deleted. From the audit of commits and the donors'
// states: every tick of the catch-up-all schedule was applied exactly once,
// none in the pause; no tick of either was applied twice.
func TestScheduleTicksOnceAcrossFaults(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	ids := []string{"w1", "w2", "w3"}
	pxs := map[string]*testenv.Proxy{} // each worker reaches Redis through its own
	for _, id := range ids {
		pxs[id] = testenv.StartProxy(t, c.redis.Addr)
		c.startVia(id, pxs[id].Addr, c.consul.Addr)
	}
	c.waitBalanced(ids...)
	cl := c.client()
	all := keyOwnedBy(t, cl, "w1", "tick-all")
	none := keyOwnedBy(t, cl, "w1", "tick-none")
	add := func(name, key, catchUp string) time.Time {
		t.Helper()
		at := time.Now()
		out, err := c.coordinator("schedule", "add", name, "--cron", "@every 1s", "--handler", ledger.HandlerDonate,
			"--key", key, "--payload", `{"amount_cents": 1, "campaign": "sched"}`, "--catch-up", catchUp)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", strings.TrimSpace(out))
		return at
	}
	added := add(all, "sched-all", "all")
	add(none, "sched-none", "none")
	if out, err := c.coordinator("schedule", "add", all, "--cron", "@every 1s", "--handler", ledger.HandlerDonate,
		"--key", "sched-all", "--payload", `{"amount_cents":1,"campaign":"sched"}`, "--catch-up", "all"); err != nil || !strings.Contains(out, "nothing changed") {
		t.Fatalf("the same schedule again: %q %v", out, err)
	}
	time.Sleep(6 * time.Second) // ticks fire for a while before the faults

	// SIGKILL of the owner: another worker takes the partition and fires
	// the ticks of the gap; w1 comes back and takes a share again.
	c.signal("w1", syscall.SIGKILL)
	killed := time.Now()
	c.waitBalanced("w2", "w3")
	t.Logf("w1 killed; its partitions moved in %v", time.Since(killed).Round(time.Millisecond))
	c.startVia("w1", pxs["w1"].Addr, c.consul.Addr)
	c.waitBalanced(ids...)
	var owner string
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		locs, err := cl.Locate(ctx, all)
		if err != nil || len(locs) != 1 || locs[0].Owner == "" {
			return fmt.Errorf("%s's partition has no owner: %v %v", all, locs, err)
		}
		owner = locs[0].Owner
		return nil
	})
	others := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == owner })
	t.Logf("%s's partition is %s's after w1 came back", all, owner)
	ticksOf := func() int64 { // the catch-up-all donor's count of ticks applied
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sts, err := cl.State(ctx, "donor", "sched-all")
		if err != nil || len(sts) != 1 {
			return -1
		}
		var d ledger.DonorState
		json.Unmarshal(sts[0].State, &d)
		return d.Count
	}
	under := ticksOf()
	testenv.Eventually(t, 30*time.Second, func() error { // ticks fire for a while under that owner
		if n := ticksOf(); n < under+3 {
			return fmt.Errorf("%d ticks of %s applied, want %d", n, all, under+3)
		}
		return nil
	})

	// SIGSTOP of the owner in the middle of a tick script, until its lease
	// lapsed and the others took over; the held script then reaches Redis
	// under the stale grant.
	fenced := c.fencedRejections()
	select {
	case <-pxs[owner].CutAt(`"name":"` + all + `"`):
	case <-time.After(10 * time.Second):
		t.Fatal(owner + " ran no tick script of " + all + " in 10s")
	}
	c.signal(owner, syscall.SIGSTOP)
	stopped := time.Now()
	c.waitBalanced(others...)
	pxs[owner].Heal()
	c.waitFencedAbove(fenced, owner+"'s tick script, held while it was stopped")
	c.signal(owner, syscall.SIGCONT)
	t.Logf("%s stopped mid-tick for %v; its tick script was refused as fenced", owner, time.Since(stopped).Round(time.Millisecond))
	c.waitBalanced(ids...)
	time.Sleep(5 * time.Second) // ticks fire for a while after the SIGSTOP

	// Pause, resume and delete take effect at once.
	pausing := time.Now()
	if _, err := c.coordinator("schedule", "pause", all); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	time.Sleep(3 * time.Second) // ticks would fire now if the pause did not hold
	status, err := c.coordinator("status")
	if err != nil || !strings.Contains(status, "schedules: 2 (1 paused: "+all+")") {
		t.Errorf("status does not count the schedules and name the paused one: %v\n%s", err, status)
	}
	resuming := time.Now()
	if out, err := c.coordinator("schedule", "resume", all); err != nil || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %q %v", out, err)
	}
	resumed := time.Now()
	time.Sleep(4 * time.Second) // ticks fire for a while after the resume
	if _, err := c.coordinator("schedule", "delete", none); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	ending := time.Now()
	if _, err := c.coordinator("schedule", "pause", all); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	list, err := c.coordinator("schedule", "list")
	if err != nil || !strings.Contains(list, all) || strings.Contains(list, none) {
		t.Errorf("schedule list: %v\n%s", err, list)
	}
	show, err := c.coordinator("schedule", "show", all)
	if err != nil || !strings.Contains(show, `"last_job": "s~`+all+`~`) {
		t.Errorf("schedule show: %v\n%s", err, show)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb := c.redis.Client(t)
	if left := waitDrained(ctx, rdb); len(left) > 0 {
		t.Fatalf("jobs left after a minute: %v", left)
	}
	ticks := committedTicks(t, rdb)
	for id, n := range ticks.count {
		if n > 1 {
			t.Errorf("tick %s committed %d times", id, n)
		}
	}

	// Every tick of the catch-up-all schedule from its first to the pause,
	// none in the pause, every one from the resume to the end. A tick of
	// the second a pause or a resume was asked in may or may not fire: it
	// took effect somewhere in that call.
	got := ticks.secs[all]
	if len(got) == 0 {
		t.Fatalf("%s fired nothing", all)
	}
	first := got[0]
	if first > added.Unix()+2 {
		t.Errorf("%s's first tick was at %d, added at %v", all, first, added)
	}
	required := append(seconds(first, pausing.Unix()-1), seconds(resumed.Unix()+1, ending.Unix()-1)...)
	allowed := append(seconds(first, paused.Unix()), seconds(resuming.Unix()+1, ended.Unix())...)
	missing, _ := diffSecs(required, got)
	_, extra := diffSecs(allowed, got)
	if len(missing) > 0 {
		t.Errorf("%s: ticks never applied: %v", all, missing)
	}
	if len(extra) > 0 {
		t.Errorf("%s: ticks applied that should not have fired (in the pause or after the end): %v", all, extra)
	}
	for _, s := range ticks.secs[none] {
		if s > deleted.Unix() {
			t.Errorf("%s fired tick %d after it was deleted at %v", none, s, deleted)
		}
	}
	var gaps []int64
	if n := ticks.secs[none]; len(n) > 0 {
		gaps, _ = diffSecs(seconds(n[0], n[len(n)-1]), n)
	}

	// The donors' states count each tick once.
	sts, err := cl.State(ctx, "donor", "sched-all", "sched-none")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, st := range sts {
		var d ledger.DonorState
		json.Unmarshal(st.State, &d)
		counts[st.Key] = d.Count
	}
	if counts["sched-all"] != int64(len(got)) || counts["sched-none"] != int64(len(ticks.secs[none])) {
		t.Errorf("donor counts %v, ticks committed: %d of %s, %d of %s", counts, len(got), all, len(ticks.secs[none]), none)
	}
	camp, err := cl.State(ctx, "campaign", "sched")
	if err == nil && len(camp) == 1 {
		var cs ledger.CampaignState
		json.Unmarshal(camp[0].State, &cs)
		if cs.Count != counts["sched-all"]+counts["sched-none"] {
			t.Errorf("campaign credited %d times, donors donated %d times", cs.Count, counts["sched-all"]+counts["sched-none"])
		}
	}

	// A tick's result is read by its id.
	tickIDs := []string{schedule.TickID(all, time.Unix(got[0], 0)), schedule.TickID(all, time.Unix(got[len(got)-1], 0))}
	rs, err := cl.Results(ctx, 0, tickIDs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.State != workerpb.JobResult_DONE {
			t.Errorf("tick job %s: %v", r.Id, r.State)
		}
	}
	t.Logf("%s: %d ticks applied once each, %d..%d, paused %d..%d; %s: %d ticks applied once each, gaps (catch-up none) %v; fenced rejections %d",
		all, len(got), got[0], got[len(got)-1], paused.Unix(), resumed.Unix(), none, len(ticks.secs[none]), gaps, c.fencedRejections()-fenced)
}

// tickCommits is what the audit shows of schedule ticks: per tick id the
// commits, per schedule the ticks committed, in order.
type tickCommits struct {
	count map[string]int
	secs  map[string][]int64
}

// committedTicks reads the audit of every partition for the jobs of
// schedule ticks.
func committedTicks(t *testing.T, rdb *redis.Client) tickCommits {
	t.Helper()
	ctx := context.Background()
	ks, err := rdb.Keys(ctx, "corral:{p*}:audit").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := tickCommits{count: map[string]int{}, secs: map[string][]int64{}}
	for _, k := range ks {
		msgs, err := rdb.XRange(ctx, k, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			id, _ := m.Values["id"].(string)
			name, tick, ok := schedule.ParseTickID(id)
			if !ok {
				continue
			}
			out.count[id]++
			if out.count[id] == 1 {
				out.secs[name] = append(out.secs[name], tick.Unix())
			}
		}
	}
	for _, s := range out.secs {
		slices.Sort(s)
	}
	return out
}

// diffSecs says which of want are not in got, and which of got are not in
// want.
func diffSecs(want, got []int64) (missing, extra []int64) {
	in := func(xs []int64, x int64) bool { _, ok := slices.BinarySearch(xs, x); return ok }
	for _, s := range want {
		if !in(got, s) {
			missing = append(missing, s)
		}
	}
	for _, s := range got {
		if !in(want, s) {
			extra = append(extra, s)
		}
	}
	return missing, extra
}

// seconds is every second from first to last.
func seconds(first, last int64) []int64 {
	var out []int64
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

// TestScheduleOnRedisCluster: a schedule's definition, its tick script and
// its ticks' relay each stay in one hash slot, so schedules work on a real
// three-master Redis Cluster; pause and delete too.
func TestScheduleOnRedisCluster(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	c := newCluster(t, "--redis", strings.Join(rc.Addrs, ","), "--audit")
	c.start("w1")
	c.start("w2")
	if _, err := c.coordinator("schedule", "add", "cluster-tick", "--cron", "@every 1s", "--handler", ledger.HandlerDonate,
		"--key", "cluster-sched", "--payload", `{"amount_cents": 1, "campaign": "wells"}`); err != nil {
		t.Fatal(err)
	}
	var donor ledger.DonorState
	waitState(t, c, "donor", "cluster-sched", &donor, func() bool { return donor.Count >= 3 })
	for _, args := range [][]string{{"schedule", "pause", "cluster-tick"}, {"schedule", "list"}, {"schedule", "show", "cluster-tick"},
		{"schedule", "resume", "cluster-tick"}, {"status"}, {"schedule", "delete", "cluster-tick"}} {
		if out, err := c.coordinator(args...); err != nil {
			t.Errorf("coordinator %s on Redis Cluster: %v (%s)", strings.Join(args, " "), err, out)
		}
	}
	// Deleted: the count stops.
	time.Sleep(time.Second) // a tick committed just before the delete may still be on its way
	waitState(t, c, "donor", "cluster-sched", &donor, func() bool { return true })
	count := donor.Count
	time.Sleep(2 * time.Second) // ticks would fire now if the delete did not hold
	waitState(t, c, "donor", "cluster-sched", &donor, func() bool { return true })
	if donor.Count != count {
		t.Errorf("the deleted schedule went on: %d ticks, then %d", count, donor.Count)
	}
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		for _, bad := range []string{"CROSSSLOT", "non local key", "MOVED", "ASK ", "reading schedules failed", "firing ticks failed"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s has %q", filepath.Base(f), bad)
			}
		}
	}
	t.Logf("Redis Cluster: %d ticks of cluster-tick applied", donor.Count)
}
