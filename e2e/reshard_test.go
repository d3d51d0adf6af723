package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// acrossPartitions counts the keys whose donations committed in more than
// one partition (a reshard moved them) out of order: every commit in the
// partition the key left must come before every commit in the one it
// went to, both in time and in submission order.
func acrossPartitions(log *audit.Log, jobs []*workerpb.Job) int {
	type run struct {
		first, last time.Time
		lo, hi      int // submission indexes
	}
	order := make(map[string]int, len(jobs))
	keyOf := make(map[string]string, len(jobs))
	for i, j := range jobs {
		order[j.Id], keyOf[j.Id] = i, j.Key
	}
	runs := map[string]map[int]*run{} // key → partition → its commits there
	for p, es := range log.Partitions {
		for _, e := range es {
			i, ok := order[e.JobID]
			if !ok {
				continue
			}
			k := keyOf[e.JobID]
			if runs[k] == nil {
				runs[k] = map[int]*run{}
			}
			r := runs[k][p]
			if r == nil {
				r = &run{first: e.At, last: e.At, lo: i, hi: i}
				runs[k][p] = r
			}
			if e.At.Before(r.first) {
				r.first = e.At
			}
			if e.At.After(r.last) {
				r.last = e.At
			}
			r.lo, r.hi = min(r.lo, i), max(r.hi, i)
		}
	}
	n := 0
	for _, byPart := range runs {
		if len(byPart) < 2 {
			continue
		}
		rs := make([]*run, 0, len(byPart))
		for _, r := range byPart {
			rs = append(rs, r)
		}
		slices.SortFunc(rs, func(a, b *run) int { return a.first.Compare(b.first) })
		for i := 1; i < len(rs); i++ {
			if rs[i].first.Before(rs[i-1].last) || rs[i].lo < rs[i-1].hi {
				n++
			}
		}
	}
	return n
}

// reshardStatus asks the cluster how its reshard goes.
func reshardStatus(t *testing.T, c *cluster) *workerpb.ReshardResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.client().Reshard(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The test: reshard 64 → 256 while donations flow at a steady
// rate for about two minutes, SIGKILL a worker half-way through the
// splits, bring it back (started with the old --partitions, which the
// cluster's own count overrides), and check everything the fault suite
// checks: every acknowledged donation and call and its credit committed
// once, the totals exact, no key's donations out of order, also across the
// partitions it moved between.
func TestReshardUnderLoad(t *testing.T) { reshardUnderLoad(t, syscall.SIGKILL) }

// TestReshardUnderLoadPaused: the same with w2 paused (SIGSTOP) instead
// of killed, until the others have taken its partitions over and finished
// the reshard, then let go on: it wakes in the middle of what it was
// doing (splits among it), and every write of its old grants, to a parent
// or to a child, is fenced.
func TestReshardUnderLoadPaused(t *testing.T) { reshardUnderLoad(t, syscall.SIGSTOP) }

func reshardUnderLoad(t *testing.T, sig syscall.Signal) {
	name := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGSTOP: "SIGSTOP"}[sig]
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, 2*60*faultRate)
	// Synchronous calls beside it, one after the other: the direct path
	// commits outside the queue, so it must not commit in a partition
	// split under it.
	l.calls = startCalls(t, c, l.seed, nil)
	settle(c, l, "w1", "w2", "w3")
	l.waitMore(t, 10*faultRate) // ten seconds of load before the reshard

	out, err := c.coordinator("reshard", "--partitions", "256", "--wait=false")
	if err != nil {
		t.Fatalf("coordinator reshard: %v\n%s", err, out)
	}
	t.Logf("coordinator reshard --partitions 256: %s", strings.TrimSpace(out))
	began := time.Now()
	// Kill a worker as soon as the first partition is split: it holds
	// partitions being split, or about to be.
	testenv.Eventually(t, 2*time.Minute, func() error {
		if r := reshardStatus(t, c); r.To == 256 && r.Split < 1 {
			return fmt.Errorf("%d of 64 partitions split", r.Split)
		}
		return nil
	})
	r := reshardStatus(t, c)
	t.Logf("%s w2 with %d of 64 partitions split (to %d) after %v", name, r.Split, r.To, time.Since(began).Round(time.Millisecond))
	if r.To != 256 {
		t.Logf("the reshard ended before the fault: it was faster than the status polls")
	}
	fault := time.Now()
	c.signal("w2", sig)
	testenv.Eventually(t, 3*time.Minute, func() error {
		if r := reshardStatus(t, c); r.Partitions != 256 || r.To != 0 {
			return fmt.Errorf("reshard under way: %d → %d, %d split", r.Partitions, r.To, r.Split)
		}
		return nil
	})
	took := time.Since(began)
	c.parts.Store(256)
	if sig == syscall.SIGSTOP {
		c.signal("w2", syscall.SIGCONT) // it wakes with the grants of 64 partitions
	} else {
		c.start("w2") // with the cluster's old --partitions: it takes 256 from Redis
	}
	c.waitBalanced("w1", "w2", "w3")
	r = reshardStatus(t, c)
	longest, err := c.client().ReshardLongestPause(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reshard 64 → 256 done in %v (%v to w2 at %v); longest pause of a partition on the live workers: %d ms",
		took.Round(time.Millisecond), name, fault.Sub(began).Round(time.Millisecond), longest)
	if r.Previous != 64 {
		t.Errorf("reshard status says the count before was %d, want 64", r.Previous)
	}
	if sig == syscall.SIGSTOP {
		// What w2 was doing when it stopped, it found fenced on waking
		// (how much depends on the moment: logged, not asserted).
		w2 := c.workerLog("w2")
		t.Logf("w2's log after waking: %d split steps failed (fenced or moved on), %d freezes failed",
			strings.Count(w2, "splitting a partition failed"), strings.Count(w2, "freezing a partition for its split failed"))
	}
	pauses := splitPauses(t, c, "w1", "w2", "w3")
	slices.Sort(pauses)
	t.Logf("%d splits logged by the workers; pause of a partition (frozen to split): %s", len(pauses), audit.Percentiles(pauses))
	// The rest of the load runs on 256 partitions, to its end.
	select {
	case <-l.done:
	case <-time.After(4 * time.Minute):
		t.Fatalf("the load did not finish in 4 minutes: %d of %d donations acknowledged", l.acked.Load(), len(l.jobs))
	}
	calls := l.calls
	rep := verify(t, c, "reshard 64→256 with a "+name, l, fault, nil, start)
	t.Logf("calls: %d acknowledged, %d by the durable path, %d attempts retried", len(calls.acked), calls.durable.Load(), calls.failed.Load())
	if rep.acked != int64(len(l.jobs)) {
		t.Errorf("%d of %d donations acknowledged", rep.acked, len(l.jobs))
	}
	// Every new partition is in use: keys reached the children.
	log, err := audit.Read(context.Background(), c.redis.Client(t), 256)
	if err != nil {
		t.Fatal(err)
	}
	children := 0
	for p := range log.Partitions {
		if p >= sharding.DefaultPartitions {
			children++
		}
	}
	if children == 0 {
		t.Errorf("no commit in partitions 64-255: nothing moved")
	}
	t.Logf("commits in %d of the 192 new partitions", children)
}

var pauseRe = regexp.MustCompile(`msg="partition split".* pause=([0-9.]+[µm]?s)`)

// splitPauses reads how long each split kept its partition frozen, from
// the workers' logs.
func splitPauses(t *testing.T, c *cluster, ids ...string) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, id := range ids {
		for _, m := range pauseRe.FindAllStringSubmatch(c.workerLog(id), -1) {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatalf("pause %q in %s's log: %v", m[1], id, err)
			}
			out = append(out, d)
		}
	}
	return out
}
