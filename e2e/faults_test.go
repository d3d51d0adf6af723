package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// The fault suite: real worker processes, real Redis and Consul, a steady
// stream of donations, one fault per test. Each test prints attempted,
// acknowledged, lost, duplicated, fenced rejections, takeovers and
// failover times, and fails on a broken invariant, never on a timing.
// CORRAL_FAULTS_LONG=1 (make test-faults-long) runs longer loads and more
// fault rounds.

var faultsLong = os.Getenv("CORRAL_FAULTS_LONG") != ""

// faultRate is the submission rate of the background load, in jobs/s.
const faultRate = 400

// faultCluster is newCluster with Redis options of the test's choosing.
func faultCluster(t *testing.T, ro testenv.RedisOptions) *cluster {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	ro.AppendOnly = true
	c := &cluster{t: t, bins: buildBinaries(t), dir: t.TempDir(), workers: map[string]*exec.Cmd{}, flags: []string{"--audit"}}
	c.redis = testenv.StartRedis(t, ro)
	c.consul = testenv.StartConsul(t)
	t.Cleanup(c.stopAll)
	return c
}

// startVia launches worker id talking to Redis and Consul at the given
// addresses (a proxy's, to cut it off alone), and waits until it is healthy.
func (c *cluster) startVia(id, redisAddr, consulAddr string) {
	c.t.Helper()
	c.launch(id, workerRun{redis: redisAddr, consul: consulAddr})
}

// waitBalanced waits until the layout in Redis places the partitions on
// ids exactly and every partition is held by the worker it names, and
// returns the holders.
func (c *cluster) waitBalanced(ids ...string) map[int]lease.Holder {
	c.t.Helper()
	rdb := c.redis.Client(c.t)
	want := slices.Sorted(slices.Values(ids))
	var settled map[int]lease.Holder
	testenv.Eventually(c.t, 30*time.Second, func() error {
		ctx := context.Background()
		l, _, lerr := lease.LoadLayout(ctx, rdb, lease.Layout{Version: -1})
		hs, err := audit.Holders(ctx, rdb, c.partitions())
		if err == nil && lerr == nil && slices.Equal(l.IDs(), want) && len(l.Owners) == c.partitions() {
			off := 0
			for p, o := range l.Owners {
				if lease.WorkerID(hs[p].Token) != o {
					off++
				}
			}
			if off == 0 {
				settled = hs
				return nil
			}
		}
		// What the logs say is read only if the wait fails.
		return lazyError(func() string {
			per := map[string]int{}
			for _, h := range hs {
				per[lease.WorkerID(h.Token)]++
			}
			return fmt.Sprintf("partitions not settled on %v: layout %d of %v (%v), partitions per holder %v, %v%s",
				ids, l.Version, l.IDs(), lerr, per, err, c.unsettled(hs, ids))
		})
	})
	return settled
}

// lazyError is an error whose message is made only when it is printed.
type lazyError func() string

func (e lazyError) Error() string { return e() }

// unsettled describes the partitions not held by one of ids, and what
// each worker's log says of them.
func (c *cluster) unsettled(hs map[int]lease.Holder, ids []string) string {
	var b strings.Builder
	for p, h := range hs {
		if slices.Contains(ids, lease.WorkerID(h.Token)) {
			continue
		}
		fmt.Fprintf(&b, "\npartition %d held by %q (grant %v); in the logs:", p, h.Token, h.Grant)
		files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
		mention := regexp.MustCompile(fmt.Sprintf(`partition=%d\b|[ \["]%d@|[\[ ]%d[\] ]`, p, p, p))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(data), "\n") {
				if mention.MatchString(line) {
					fmt.Fprintf(&b, "\n  %s: %.300s", filepath.Base(f), line)
				}
			}
		}
	}
	return b.String()
}

// load submits donations at faultRate until stopped, retrying a batch
// until it is acknowledged (ids make that safe). A job rejected fails
// the test.
type load struct {
	seed      uint64
	jobs      []*workerpb.Job
	attempted atomic.Int64
	acked     atomic.Int64
	probes    atomic.Int64
	calls     *callLoad // synchronous calls beside the submissions, if any
	cl        interface {
		Submit(context.Context, []*workerpb.Job) ([]*workerpb.SubmitResult, error)
	}
	stop chan struct{}
	done chan struct{}
}

func startLoad(t *testing.T, c *cluster, max int) *load {
	seed := uint64(time.Now().UnixNano())
	jobs, _ := workload.Generate(workload.Spec{Seed: seed, Donations: max, Donors: 300, Campaigns: 20})
	l := &load{seed: seed, jobs: jobs, stop: make(chan struct{}), done: make(chan struct{})}
	cl := c.client()
	l.cl = cl
	go func() {
		defer close(l.done)
		const batch = 10
		tick := time.NewTicker(time.Second * batch / faultRate)
		defer tick.Stop()
		for i := 0; i < len(jobs); i += batch {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			part := jobs[i:min(i+batch, len(jobs))]
			for {
				l.attempted.Add(int64(len(part)))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := cl.Submit(ctx, part)
				cancel()
				if err == nil {
					rejected := false
					for _, r := range res {
						if r.Error != "" {
							t.Errorf("job %s rejected: %s", r.Id, r.Error)
							rejected = true
							break
						}
					}
					if !rejected {
						l.acked.Add(int64(len(part)))
						break
					}
				}
				// A rejected job fails the test, and its batch goes again
				// (ids make that safe), so the load goes on.
				select {
				case <-l.stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}()
	return l
}

// probe puts one job in each of parts right after a fault, so that every
// moved partition has work waiting and its failover time is the time to
// resume, not the time until the load happens to hit it.
func (l *load) probe(parts map[int]int64) {
	var jobs []*workerpb.Job
	for p := range parts {
		for i := 0; ; i++ {
			key := fmt.Sprintf("probe-%d-%d", p, i)
			if sharding.PartitionOf(key, sharding.DefaultPartitions) == p {
				jobs = append(jobs, &workerpb.Job{Id: fmt.Sprintf("probe-%d-%d", l.seed, p), Handler: "donor.donate",
					Key: key, Payload: []byte(`{"amount_cents": 1, "campaign": "probe"}`)})
				break
			}
		}
	}
	l.probes.Add(int64(len(jobs)))
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := l.cl.Submit(ctx, jobs)
			cancel()
			if err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // a pause before the probes go again
		}
	}()
}

// finish stops the load and returns the expected totals of what it sent.
func (l *load) finish() ([]*workerpb.Job, workload.Expected) {
	close(l.stop)
	<-l.done
	n := int(l.acked.Load())
	jobs, exp := workload.Generate(workload.Spec{Seed: l.seed, Donations: n, Donors: 300, Campaigns: 20})
	if l.calls != nil {
		cj, cexp := l.calls.finish()
		jobs = append(jobs, cj...)
		maps.Copy(exp.Donors, cexp.Donors)
		maps.Copy(exp.Campaigns, cexp.Campaigns)
	}
	return jobs, exp
}

// faultReport is what every fault run prints.
type faultReport struct {
	name                 string
	attempted, acked     int64
	lost, duplicated     int
	outOfOrder           int // a key's donation committed before one submitted ahead of it
	fenced, takeovers    int64
	grants               int64
	failover             []time.Duration
	regressions, missing []string
}

func (r faultReport) String() string {
	return fmt.Sprintf("%s: attempted %d, acknowledged %d, lost %d, duplicated %d, out of order %d, fenced rejections %d, takeovers %d (grants %d), failover %s",
		r.name, r.attempted, r.acked, r.lost, r.duplicated, r.outOfOrder, r.fenced, r.takeovers, r.grants, audit.Percentiles(r.failover))
}

// verify waits for the totals of everything acknowledged, then checks the
// audit: every donation and its credit committed exactly once, accepted
// epochs never going back in any partition.
// fencedBase adds rejections Redis counted before a restart reset its
// statistics.
func verify(t *testing.T, c *cluster, name string, l *load, fault time.Time, moved map[int]int64, before map[int]lease.Holder, fencedBase ...int64) faultReport {
	t.Helper()
	jobs, exp := l.finish()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := workload.WaitFor(ctx, c.client(), exp)
	if err != nil {
		t.Fatalf("%s: verify totals: %v", name, err)
	}
	rdb := c.redis.Client(t)
	log, err := audit.Read(ctx, rdb, c.partitions())
	if err != nil {
		t.Fatal(err)
	}
	chk := log.Check()
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.Id
	}
	r := faultReport{name: name, attempted: l.attempted.Load(), acked: l.acked.Load(),
		duplicated: chk.Duplicated, regressions: append(chk.Regressions, chk.Regrants...), missing: chk.Missing(ids)}
	r.lost = len(r.missing)
	r.outOfOrder = outOfOrder(log, jobs) + acrossPartitions(log, jobs)
	r.fenced, err = audit.FencedRejections(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fencedBase {
		r.fenced += n
	}
	r.takeovers = c.takeovers()
	after, err := audit.Holders(ctx, rdb, c.partitions())
	if err != nil {
		t.Fatal(err)
	}
	r.grants = audit.Grants(before, after)
	r.failover = log.Failover(fault, moved)
	t.Log(r)
	if !rep.OK() {
		t.Errorf("%s: totals wrong: %s", name, rep)
	}
	if r.lost > 0 {
		t.Errorf("%s: %d acknowledged donations never committed, e.g. %v", name, r.lost, r.missing[:min(5, len(r.missing))])
	}
	if r.duplicated > 0 {
		t.Errorf("%s: %d jobs committed more than once", name, r.duplicated)
	}
	if r.outOfOrder > 0 {
		t.Errorf("%s: %d donations committed before a donation of their key submitted ahead of them", name, r.outOfOrder)
	}
	for _, s := range r.regressions {
		t.Errorf("%s: two writers: %s", name, s)
	}
	if want := 2 * (len(jobs) + int(l.probes.Load())); chk.Commits != want {
		t.Errorf("%s: audit shows %d commits, want %d (donations and their credits)", name, chk.Commits, want)
	}
	return r
}

// outOfOrder counts, in the audit's commit order, the donations that
// committed before an earlier-submitted donation of the same key. The load
// submits one batch after the other, each acknowledged before the next, so
// jobs' order in the list is their submission order.
func outOfOrder(log *audit.Log, jobs []*workerpb.Job) int {
	type place struct {
		key string
		at  int
	}
	order := make(map[string]place, len(jobs))
	for i, j := range jobs {
		order[j.Id] = place{j.Key, i}
	}
	n := 0
	for _, es := range log.Partitions {
		last := map[string]int{}
		for _, e := range es {
			pl, ok := order[e.JobID]
			if !ok {
				continue
			}
			if prev, seen := last[pl.key]; seen && pl.at < prev {
				n++
			}
			last[pl.key] = max(last[pl.key], pl.at)
		}
	}
	return n
}

var takeoverRe = regexp.MustCompile(`\(from `)

// takeovers counts claims from a holder whose lease had expired, in every
// worker's log.
func (c *cluster) takeovers() int64 {
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	var n int64
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += int64(len(takeoverRe.FindAll(b, -1)))
	}
	return n
}

// workerLog returns worker id's log so far.
func (c *cluster) workerLog(id string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
	return string(b)
}

func threeWorkers(c *cluster) {
	for _, id := range []string{"w1", "w2", "w3"} {
		c.start(id)
	}
}

func loadSize() int {
	if faultsLong {
		return 40000
	}
	return 20000
}

// waitMore waits until the load has had n more donations acknowledged
// (or has submitted all it has), so what follows lands on commits made by
// the workers as they are now, however slow the machine.
func (l *load) waitMore(t *testing.T, n int64) {
	t.Helper()
	want := l.acked.Load() + n
	testenv.Eventually(t, time.Minute, func() error {
		select {
		case <-l.done:
			return nil
		default:
		}
		if got := l.acked.Load(); got < want {
			return fmt.Errorf("the load has %d donations acknowledged, want %d", got, want)
		}
		return nil
	})
}

// settle waits until ids hold every partition and the load has run a
// second's worth on them, so the fault lands on busy workers.
func settle(c *cluster, l *load, ids ...string) map[int]lease.Holder {
	hs := c.waitBalanced(ids...)
	l.waitMore(c.t, faultRate)
	return hs
}

// fencedRejections is how many commits Redis has refused as fenced so far.
func (c *cluster) fencedRejections() int64 {
	c.t.Helper()
	n, err := audit.FencedRejections(context.Background(), c.redis.Client(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// waitFencedAbove waits until Redis has refused more than n commits as
// fenced; what names the commit expected.
func (c *cluster) waitFencedAbove(n int64, what string) {
	c.t.Helper()
	rdb := c.redis.Client(c.t)
	testenv.Eventually(c.t, 20*time.Second, func() error {
		got, err := audit.FencedRejections(context.Background(), rdb)
		if err != nil || got <= n {
			return fmt.Errorf("%s: Redis counts %d fenced rejections, want more than %d (%v)", what, got, n, err)
		}
		return nil
	})
}

// commitMarker is in every commit and nothing else a worker sends: only
// the commit script touches a partition's audit stream.
const commitMarker = "}:audit"

// 1. SIGSTOP an owner past its lease TTL, then SIGCONT: its partitions
// move, and the commit it had on the wire when it froze lands after the
// takeover and is fenced. The worker reaches Redis through a proxy that
// holds that commit, so the freeze falls mid-commit every time: the case
// no local lease check can catch.
func TestFaultStopContinue(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	px := testenv.StartProxy(t, c.redis.Addr)
	c.start("w1")
	c.startVia("w2", px.Addr, c.consul.Addr)
	c.start("w3")
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	rounds := 1
	if faultsLong {
		rounds = 3
	}
	var fault time.Time
	var moved map[int]int64
	for round := 1; round <= rounds; round++ {
		hs := settle(c, l, "w1", "w2", "w3")
		select {
		case <-px.CutAt(commitMarker):
		case <-time.After(20 * time.Second):
			t.Fatal("w2 sent no commit in 20s")
		}
		c.signal("w2", syscall.SIGSTOP)
		frozen := time.Now()
		if moved == nil {
			fault, moved = frozen, audit.HeldBy(hs, "w2")
			l.probe(moved)
		}
		// Frozen until its lease has lapsed and the others took over
		// every partition, so its held commit lands on a newer grant.
		c.waitBalanced("w1", "w3")
		fenced := c.fencedRejections()
		px.Heal()
		c.waitFencedAbove(fenced, "w2's held commit, delivered after the takeover")
		c.signal("w2", syscall.SIGCONT)
		t.Logf("round %d: w2 frozen mid-commit for %v, until its partitions moved; its held commit was fenced; then woken", round, time.Since(frozen).Round(time.Millisecond))
	}
	c.waitBalanced("w1", "w2", "w3")
	l.waitMore(t, faultRate) // a second of load, on a quick machine
	r := verify(t, c, "SIGSTOP/SIGCONT", l, fault, moved, start)
	if r.fenced == 0 {
		t.Errorf("no fenced rejection: the stale commit was accepted or never sent; the run proved nothing")
	}
	if r.takeovers == 0 {
		t.Errorf("nobody took over the stopped worker's partitions")
	}
}

// 2. SIGKILL an owner in the middle of batches: its partitions resume
// elsewhere, exactly one effect per job.
func TestFaultKillMidBatch(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	c.signal("w2", syscall.SIGKILL)
	l.probe(moved)
	c.waitBalanced("w1", "w3")
	l.waitMore(t, faultRate) // a second of load after the takeover, on a quick machine
	if faultsLong {
		c.start("w2")
		settle(c, l, "w1", "w2", "w3")
		c.signal("w3", syscall.SIGKILL)
		c.waitBalanced("w1", "w2")
		l.waitMore(t, faultRate) // a second of load after the takeover, on a quick machine
	}
	r := verify(t, c, "SIGKILL", l, fault, moved, start)
	if r.takeovers == 0 {
		t.Errorf("nobody took over the killed worker's partitions")
	}
}

// 3. Cut one worker off from Redis only, then heal: it stops trusting its
// lease and claims nothing; peers take over; whatever it had in flight
// reaches Redis late and is fenced.
func TestFaultRedisCut(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	px := testenv.StartProxy(t, c.redis.Addr)
	c.start("w1")
	c.startVia("w2", px.Addr, c.consul.Addr)
	c.start("w3")
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	// Cut w2 off while one of its commits is on the wire.
	select {
	case <-px.CutAt(commitMarker):
	case <-time.After(20 * time.Second):
		t.Fatal("w2 sent no commit in 20s")
	}
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	l.probe(moved)
	// Peers own everything once w2's lease expires; w2's check goes critical.
	c.waitMembers(func(ids []string) bool { return !contains(ids, "w2") }, "w2 critical while cut off from Redis")
	c.waitBalanced("w1", "w3")
	px.Heal()
	c.waitMembers(func(ids []string) bool { return contains(ids, "w2") }, "w2 healthy again after the heal")
	c.waitBalanced("w1", "w2", "w3")
	l.waitMore(t, faultRate) // a second of load, on a quick machine
	r := verify(t, c, "Redis cut", l, fault, moved, start)
	if r.fenced == 0 {
		t.Errorf("the commit held during the cut was not fenced when it arrived")
	}
	log := c.workerLog("w2")
	if !strings.Contains(log, "lease not trusted") && !strings.Contains(log, "lease expired") && !strings.Contains(log, "lease renewal failed") {
		t.Errorf("w2's log shows no sign that it stopped trusting its lease")
	}
	if r.takeovers == 0 {
		t.Errorf("nobody took over the cut-off worker's partitions")
	}
}

// 4a. Cut one worker off from Consul only: it steps down after a check TTL
// and rejoins after the heal; never two accepted writers.
func TestFaultConsulCut(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	px := testenv.StartProxy(t, c.consul.Addr)
	c.start("w1")
	c.startVia("w2", c.redis.Addr, px.Addr)
	c.start("w3")
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	px.Cut()
	l.probe(moved)
	c.waitMembers(func(ids []string) bool { return !contains(ids, "w2") }, "w2 critical in Consul")
	c.waitBalanced("w1", "w3")
	px.Heal()
	c.waitMembers(func(ids []string) bool { return contains(ids, "w2") }, "w2 healthy again after the heal")
	c.waitBalanced("w1", "w2", "w3")
	r := verify(t, c, "Consul cut", l, fault, moved, start)
	if !strings.Contains(c.workerLog("w2"), "stepping down") {
		t.Errorf("w2 never stepped down while Consul could not hear it")
	}
	_ = r
}

// 4b. Restart the Consul agent (a dev agent forgets every service): the
// workers register again, nobody stays critical, never two writers.
func TestFaultConsulRestart(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	l.probe(moved)
	c.consul.Restart(t)
	t.Logf("Consul agent restarted in %v", time.Since(fault).Round(time.Millisecond))
	c.waitMembers(func(ids []string) bool { return len(ids) == 3 }, "all three workers healthy on the restarted agent")
	c.waitBalanced("w1", "w2", "w3")
	l.waitMore(t, faultRate) // a second of load, on a quick machine
	verify(t, c, "Consul agent restart", l, fault, moved, start)
}

// 5. SIGKILL redis-server and restart it from its AOF (appendfsync
// always): epochs never go back, nothing acknowledged is lost or doubled.
func TestFaultRedisRestart(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{Fsync: "always"})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	settle(c, l, "w1", "w2", "w3")
	rdb := c.redis.Client(t)
	ctx := context.Background()
	fencedBase, _ := audit.FencedRejections(ctx, rdb) // Redis's error statistics start again at zero
	before, err := audit.Holders(ctx, rdb, sharding.DefaultPartitions)
	if err != nil {
		t.Fatal(err)
	}
	// A million keys beside the jobs: after the restart Redis loads its AOF
	// for a while, answering LOADING meanwhile, and the load goes on.
	for i := 0; i < 10; i++ {
		pad := `local n = tonumber(ARGV[1]) for i = n, n + 99999 do redis.call('SET', 'pad:' .. i, 'x') end return 0`
		if err := rdb.Eval(ctx, pad, nil, i*100000).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fault := time.Now()
	c.redis.Kill(t)
	time.Sleep(time.Second) // the outage: the load and the workers run into a dead Redis
	l.probe(map[int]int64{0: 0, 21: 0, 42: 0, 63: 0})
	c.redis.Restart(t)
	t.Logf("redis-server killed and back from its AOF in %v", time.Since(fault).Round(time.Millisecond))
	after, err := audit.Holders(ctx, rdb, c.partitions())
	if err != nil {
		t.Fatal(err)
	}
	for p, h := range after {
		if h.Epoch < before[p].Epoch {
			t.Errorf("partition %d: epoch went back from %d to %d across the restart", p, before[p].Epoch, h.Epoch)
		}
	}
	moved := map[int]int64{}
	for p, h := range before {
		moved[p] = h.Epoch
	}
	c.waitBalanced("w1", "w2", "w3")
	l.waitMore(t, faultRate) // a second of load, on a quick machine
	verify(t, c, "Redis SIGKILL+AOF restart", l, fault, moved, start, fencedBase)
}

// 6. SIGTERM a worker under load: it hands off, peers claim at once, and
// no commit is fenced.
func TestFaultTerminateHandoff(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	c.signal("w2", syscall.SIGTERM)
	l.probe(moved)
	c.waitBalanced("w1", "w3")
	l.waitMore(t, faultRate) // a second of load after the handoff, on a quick machine
	r := verify(t, c, "SIGTERM", l, fault, moved, start)
	if r.fenced != 0 {
		t.Errorf("graceful handoff had %d fenced commits, want 0", r.fenced)
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		if strings.Contains(c.workerLog(id), "commit fenced") {
			t.Errorf("%s logged a fenced commit during a graceful handoff", id)
		}
	}
	if len(r.failover) == 0 {
		t.Errorf("no moved partition committed after the handoff")
	}
}

// Drain, through the coordinator: the worker releases everything, peers
// own every partition, locate names the new owners.
func TestDrainAndLocate(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, 5000)
	hs := settle(c, l, "w1", "w2", "w3")
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	out, err := c.coordinator("drain", "w2")
	if err != nil || !strings.Contains(out, "w2 drained: released") {
		t.Fatalf("drain: out %q err %v", out, err)
	}
	l.probe(moved) // after the drain, or w2 would run the probes itself
	t.Logf("coordinator drain w2: %s", strings.TrimSpace(out))
	c.waitBalanced("w1", "w3")
	// The checks say what a person needs in the Consul UI.
	checks, err := c.consul.Client(t).Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"w1": {"passing", "lease ok", "owns ", "queue lag", "plugins donations@"},
		"w2": {"critical", "draining"},
	} {
		chk := checks[discovery.CheckID(id)]
		if chk == nil {
			t.Fatalf("no Consul check for %s", id)
		}
		t.Logf("%s check: %s: %s", id, chk.Status, chk.Output)
		for _, w := range want {
			if !strings.Contains(chk.Status+" "+chk.Output, w) {
				t.Errorf("%s check (%s) %q lacks %q", id, chk.Status, chk.Output, w)
			}
		}
	}
	out, err = c.coordinator("locate", "donor-00001", "donor-00002")
	if err != nil {
		t.Fatalf("locate: %v", err)
	}
	t.Logf("coordinator locate:\n%s", out)
	if !strings.Contains(out, "donor-00001") || strings.Contains(out, " w2 ") {
		t.Errorf("locate after draining w2 printed:\n%s", out)
	}
	l.waitMore(t, faultRate) // a second of load after the drain, on a quick machine
	r := verify(t, c, "drain", l, fault, moved, start)
	if r.fenced != 0 {
		t.Errorf("drain had %d fenced commits, want 0", r.fenced)
	}
}
