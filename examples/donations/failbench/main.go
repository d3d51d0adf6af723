// Command failbench measures failover on a cluster of its own: a Redis
// with AOF, a Consul dev agent and three workers with the donations
// plugin, under a steady stream of donations. Each round SIGKILLs one
// worker, then SIGTERMs one, and times every partition that moved from the
// signal to its first commit accepted under the new owner's epoch (read
// from the audit stream, whose ids are Redis timestamps). Right after each
// fault it puts one job in every moved partition, so the figure is the
// time to resume, not the time until the load happens to hit a partition.
// It prints p50/p99/max; it asserts nothing about time. Then it pauses a
// worker with SIGSTOP for 200 ms and for 500 ms (-pauses) and counts the
// owner changes that follow (epoch increments): a paused worker is alive,
// and a pause shorter than the lease should move nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

type config struct {
	bin     string
	rounds  int
	rate    int
	workers int
	flags   string
	keep    bool
	pauses  string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin", "directory with worker and donations-plugin")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds; each SIGKILLs one worker and SIGTERMs one")
	flag.IntVar(&cfg.rate, "rate", 400, "background donations per second")
	flag.IntVar(&cfg.workers, "workers", 3, "workers in the cluster")
	flag.StringVar(&cfg.flags, "worker-flags", "", "extra worker flags, e.g. \"--lease-ttl 1s --lease-renew 200ms\"")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the state directory (logs) afterwards")
	flag.StringVar(&cfg.pauses, "pauses", "200ms,500ms", "SIGSTOP pauses to count false takeovers after, comma-separated (\"\" for none)")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "failbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	cfg     config
	dir     string
	redis   *testenv.RedisServer
	consul  *testenv.ConsulAgent
	rdb     *redis.Client
	cl      *client.Client
	workers map[string]*exec.Cmd
	seq     atomic.Int64
}

func run(cfg config) error {
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	cfg.bin = bin
	for _, b := range []string{"worker", "donations-plugin"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%s: %w (run `make build`)", filepath.Join(bin, b), err)
		}
	}
	dir, err := os.MkdirTemp("", "corral-failbench")
	if err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := &bench{cfg: cfg, dir: dir, workers: map[string]*exec.Cmd{}}
	os.MkdirAll(filepath.Join(dir, "redis"), 0o755)
	os.MkdirAll(filepath.Join(dir, "consul"), 0o755)
	if b.redis, err = testenv.StartRedisServer(ctx, testenv.RedisConfig{Dir: filepath.Join(dir, "redis"), AppendOnly: true}); err != nil {
		return err
	}
	defer b.redis.Stop()
	if b.consul, err = testenv.StartConsulAgent(ctx, testenv.ConsulAgentConfig{Dir: filepath.Join(dir, "consul")}); err != nil {
		return err
	}
	defer b.consul.Stop()
	b.rdb = redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer b.rdb.Close()
	// The client's breaker logs would interleave with the figures.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if b.cl, err = client.New(client.Config{ConsulAddr: b.consul.Addr, Logger: quiet}); err != nil {
		return err
	}
	defer b.cl.Close()
	defer b.stopAll()

	ids := make([]string, cfg.workers)
	for i := range ids {
		ids[i] = fmt.Sprintf("w%d", i+1)
		if err := b.start(ids[i]); err != nil {
			return err
		}
	}
	if _, err := b.balanced(ids); err != nil {
		return err
	}
	stop := make(chan struct{})
	loadDone := b.load(stop)
	fmt.Printf("failover benchmark: %d workers, %d partitions, %d donations/s in the background, %d rounds; machine: %d-core\n",
		cfg.workers, sharding.DefaultPartitions, cfg.rate, cfg.rounds, runtime.NumCPU())

	results := map[string][]time.Duration{}
	pauseStats := map[time.Duration]struct{ parts, moves, rounds int }{}
	for r := 1; r <= cfg.rounds; r++ {
		for k, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			victim := ids[(2*r+k)%len(ids)]
			d, err := b.round(ids, victim, sig)
			if err != nil {
				close(stop)
				return fmt.Errorf("round %d, %v of %s: %w", r, sig, victim, err)
			}
			name := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM"}[sig]
			results[name] = append(results[name], d...)
			fmt.Printf("  round %d: %s %s: %d partitions moved, %s\n", r, name, victim, len(d), audit.Percentiles(d))
		}
	}
	var pauses []string
	for _, f := range strings.Split(cfg.pauses, ",") {
		if f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			close(stop)
			return fmt.Errorf("-pauses: %w", err)
		}
		for r := 1; r <= cfg.rounds; r++ {
			victim := ids[r%len(ids)]
			parts, moves, err := b.pause(ids, victim, d)
			if err != nil {
				close(stop)
				return fmt.Errorf("round %d, SIGSTOP of %s for %v: %w", r, victim, d, err)
			}
			fmt.Printf("  round %d: SIGSTOP %s for %v: %d partitions changed owner (%d epoch increments)\n", r, victim, d, parts, moves)
			pst := pauseStats[d]
			pst.parts += parts
			pst.moves += moves
			pst.rounds++
			pauseStats[d] = pst
		}
		pauses = append(pauses, f)
	}
	close(stop)
	<-loadDone

	chk, err := b.check(ctx)
	if err != nil {
		return err
	}
	for _, name := range []string{"SIGKILL", "SIGTERM"} {
		d := results[name]
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Printf("failover after %s: %s\n", name, audit.Percentiles(d))
	}
	for _, f := range pauses {
		d, _ := time.ParseDuration(f)
		pst := pauseStats[d]
		fmt.Printf("false takeovers after a %v SIGSTOP: %d partition owner changes (%d epoch increments) in %d rounds\n", d, pst.parts, pst.moves, pst.rounds)
	}
	fmt.Printf("audit: %d commits, duplicated %d, epoch regressions %d, fenced rejections %d\n",
		chk.Commits, chk.Duplicated, len(chk.Regressions), mustFenced(b))
	if !chk.OK() {
		return errors.New("audit found a broken invariant")
	}
	return nil
}

// round sends sig to victim, probes the partitions it held, waits until
// each committed under a newer epoch, then restarts it.
func (b *bench) round(ids []string, victim string, sig syscall.Signal) ([]time.Duration, error) {
	if _, err := b.balanced(ids); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	hs, err := audit.Holders(context.Background(), b.rdb, sharding.DefaultPartitions)
	if err != nil {
		return nil, err
	}
	moved := audit.HeldBy(hs, victim)
	fault := time.Now()
	if err := b.workers[victim].Process.Signal(sig); err != nil {
		return nil, err
	}
	b.probe(moved)
	var got []time.Duration
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err = b.failover(fault, moved)
		if err != nil {
			return nil, err
		}
		if len(got) == len(moved) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.workers[victim].Wait()
	delete(b.workers, victim)
	if len(got) < len(moved) {
		return got, fmt.Errorf("only %d of %d moved partitions committed again within 15s", len(got), len(moved))
	}
	return got, b.start(victim)
}

// pause stops victim for d, lets it go on, waits two lease TTLs and counts
// the partitions whose epoch changed meanwhile, and the epoch increments
// (more than one per partition would be flapping).
func (b *bench) pause(ids []string, victim string, d time.Duration) (parts, moves int, err error) {
	if _, err := b.balanced(ids); err != nil {
		return 0, 0, err
	}
	time.Sleep(500 * time.Millisecond)
	before, err := audit.Holders(context.Background(), b.rdb, sharding.DefaultPartitions)
	if err != nil {
		return 0, 0, err
	}
	cmd := b.workers[victim]
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return 0, 0, err
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return 0, 0, err
	}
	time.Sleep(3 * time.Second)
	if _, err := b.balanced(ids); err != nil {
		return 0, 0, err
	}
	after, err := audit.Holders(context.Background(), b.rdb, sharding.DefaultPartitions)
	if err != nil {
		return 0, 0, err
	}
	for p, h := range after {
		if n := int(h.Epoch - before[p].Epoch); n > 0 {
			parts++
			moves += n
		}
	}
	return parts, moves, nil
}

// failover reads the audit streams of the moved partitions from the fault
// on, and returns the time to the first commit under a newer epoch of each
// partition that has one.
func (b *bench) failover(fault time.Time, moved map[int]int64) ([]time.Duration, error) {
	var out []time.Duration
	st := store.New(b.rdb, store.Config{Partitions: sharding.DefaultPartitions})
	for p, epoch := range moved {
		es, _, err := st.AuditLog(context.Background(), p, fault)
		if err != nil {
			return nil, err
		}
		l := &audit.Log{Partitions: map[int][]store.AuditEntry{p: es}}
		out = append(out, l.Failover(fault, map[int]int64{p: epoch})...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// probe enqueues one donation in each of parts.
func (b *bench) probe(parts map[int]int64) {
	n := b.seq.Add(1)
	var jobs []*workerpb.Job
	for p := range parts {
		for i := 0; ; i++ {
			key := fmt.Sprintf("probe-%d-%d", p, i)
			if sharding.PartitionOf(key, sharding.DefaultPartitions) == p {
				jobs = append(jobs, &workerpb.Job{Id: fmt.Sprintf("probe-%d-%d", n, p), Handler: "donor.donate", Key: key,
					Payload: []byte(`{"amount_cents": 1, "campaign": "probe"}`)})
				break
			}
		}
	}
	go b.submit(jobs)
}

func (b *bench) submit(jobs []*workerpb.Job) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.cl.Submit(ctx, jobs)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load submits donations at the configured rate until stop closes.
func (b *bench) load(stop chan struct{}) chan struct{} {
	done := make(chan struct{})
	jobs, _ := workload.Generate(workload.Spec{Seed: uint64(time.Now().UnixNano()), Donations: 1_000_000, Donors: 1000, Campaigns: 20})
	go func() {
		defer close(done)
		const batch = 10
		t := time.NewTicker(time.Second * batch / time.Duration(b.cfg.rate))
		defer t.Stop()
		for i := 0; i < len(jobs); i += batch {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			b.submit(jobs[i : i+batch])
		}
	}()
	return done
}

// balanced waits until every partition is held by one of ids and each
// holds some.
func (b *bench) balanced(ids []string) (map[int]lease.Holder, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		hs, err := audit.Holders(context.Background(), b.rdb, sharding.DefaultPartitions)
		if err == nil {
			per := map[string]int{}
			for _, h := range hs {
				per[lease.WorkerID(h.Token)]++
			}
			n, ok := 0, true
			for _, id := range ids {
				n += per[id]
				ok = ok && per[id] > 0
			}
			if ok && n == sharding.DefaultPartitions {
				return hs, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("partitions did not settle on %v within 30s (logs in %s; -keep keeps them)", ids, b.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bench) start(id string) error {
	logf, err := os.OpenFile(filepath.Join(b.dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"--id", id, "--redis", b.redis.Addr, "--consul", b.consul.Addr, "--audit",
		"--plugin", filepath.Join(b.cfg.bin, "donations-plugin")}
	args = append(args, strings.Fields(b.cfg.flags)...)
	cmd := exec.Command(filepath.Join(b.cfg.bin, "worker"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	b.workers[id] = cmd
	return nil
}

func (b *bench) stopAll() {
	for id, cmd := range b.workers {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		delete(b.workers, id)
	}
}

func (b *bench) check(ctx context.Context) (audit.Check, error) {
	l, err := audit.Read(ctx, b.rdb, sharding.DefaultPartitions)
	if err != nil {
		return audit.Check{}, err
	}
	return l.Check(), nil
}

func mustFenced(b *bench) int64 {
	n, _ := audit.FencedRejections(context.Background(), b.rdb)
	return n
}
