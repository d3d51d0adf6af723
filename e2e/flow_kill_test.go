package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/testenv"
)

// TestFlowSlotsOfAKilledWorker: a worker SIGKILLed while its jobs hold
// concurrency slots of a handler limited to 2. Its calls die with it; the
// slots it held free themselves when their lease ends (nothing gives them
// back), and the handler's jobs go on elsewhere. Over the whole run, the
// calls the plugin saw (a killed one counted until its process died)
// never overlapped more than 2 at a time, every job finished, and the
// cluster reached 2 in flight again after the kill: no slot leaked.
func TestFlowSlotsOfAKilledWorker(t *testing.T) {
	c, rdb := flowCluster(t, 3)
	ctx := context.Background()
	if out, err := c.coordinator("handler", "limit", "slow.run", "--concurrency", "2"); err != nil {
		t.Fatalf("limit: %q %v", out, err)
	}
	waitFlowInForce(t, c, 3, "slow.run", "concurrency", 2)
	const n = 60
	var jobs []*workerpb.Job
	for i := range n {
		jobs = append(jobs, &workerpb.Job{Id: fmt.Sprintf("slow-%d", i), Handler: "slow.run", Key: fmt.Sprintf("s%d", i), Payload: []byte(`{"ms":300}`)})
	}
	submitJobs(t, c, jobs)

	// Kill the worker of a call in flight, once a few calls have ended.
	var victim string
	var killedAt int64
	testenv.Eventually(t, 60*time.Second, func() error {
		if done, _ := rdb.LLen(ctx, "flowtest:spans").Result(); done < 6 {
			return fmt.Errorf("%d calls ended, want 6 before the kill", done)
		}
		open, err := rdb.HGetAll(ctx, "flowtest:open").Result()
		if err != nil {
			return err
		}
		pids := map[int]string{}
		c.mu.Lock()
		for id, cmd := range c.workers {
			pids[cmd.Process.Pid] = id
		}
		c.mu.Unlock()
		for _, v := range open {
			_, pid, _ := strings.Cut(v, " ")
			p, _ := strconv.Atoi(pid)
			if id, ok := pids[p]; ok {
				victim = id
				return nil
			}
		}
		return fmt.Errorf("no call in flight (open: %v)", open)
	})
	killedAt = time.Now().UnixMilli()
	c.signal(victim, syscall.SIGKILL)
	t.Logf("killed %s with calls in flight", victim)

	testenv.Eventually(t, 3*time.Minute, func() error {
		res, err := c.client().Results(ctx, 0, idsOf(jobs)...)
		if err != nil {
			return err
		}
		left := 0
		for _, r := range res {
			if r.State != workerpb.JobResult_DONE {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d of %d jobs not done", left, n)
		}
		return nil
	})

	// The calls as spans: ended ones as the plugin timed them, the killed
	// ones until a moment after the kill (their process died with its
	// worker).
	type span struct{ start, end int64 }
	var spans []span
	ended := map[string]int{}
	raw, _ := rdb.LRange(ctx, "flowtest:spans", 0, -1).Result()
	for _, v := range raw {
		f := strings.Fields(v)
		s, _ := strconv.ParseInt(f[1], 10, 64)
		e, _ := strconv.ParseInt(f[2], 10, 64)
		spans = append(spans, span{s, e})
		ended[f[0]]++
	}
	open, _ := rdb.HGetAll(ctx, "flowtest:open").Result()
	if len(open) == 0 {
		t.Fatal("no call of the killed worker stayed open: the kill proves nothing")
	}
	for call, v := range open {
		start, pid, _ := strings.Cut(v, " ")
		s, _ := strconv.ParseInt(start, 10, 64)
		spans = append(spans, span{s, killedAt + 200})
		t.Logf("killed call %s (worker pid %s) started %d ms before the kill", call, pid, killedAt-s)
	}
	for _, j := range jobs {
		if ended[j.Id] == 0 {
			t.Errorf("job %s done, but no call of it ended", j.Id)
		}
	}
	peak := func(from int64) int {
		type ev struct {
			at int64
			d  int
		}
		var evs []ev
		for _, s := range spans {
			if s.end > from {
				evs = append(evs, ev{max(s.start, from), 1}, ev{s.end, -1})
			}
		}
		// Ends before starts at the same ms: a slot given back and taken.
		sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at || evs[i].at == evs[j].at && evs[i].d < evs[j].d })
		cur, most := 0, 0
		for _, e := range evs {
			cur += e.d
			most = max(most, cur)
		}
		return most
	}
	all, after := peak(0), peak(killedAt+200)
	t.Logf("%d calls (%d killed); peak in flight %d over the run, %d after the kill", len(spans), len(open), all, after)
	if all > 2 {
		t.Fatalf("%d calls in flight at once, over the limit of 2", all)
	}
	if after < 2 {
		t.Fatalf("after the kill the handler never had 2 calls in flight again (peak %d): the killed worker's slots stayed lost", after)
	}
	if left, _ := rdb.ZCard(ctx, keys.ForHandler("slow.run").Slots()).Result(); left != 0 {
		t.Fatalf("%d slots still held after every job finished", left)
	}
}

func idsOf(jobs []*workerpb.Job) []string {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.Id
	}
	return ids
}
