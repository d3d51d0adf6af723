// Command bench is the burn-down benchmark: it pre-loads donations straight
// into the partition queues, starts the workers with a command you give,
// and reports how fast they drain (every donation and the campaign credit
// it emits), with the Redis commands, CPU time and worker memory it took.
// Then it submits a steady stream of half that rate (the share -load sets)
// beside the running workers to measure job latency on a cluster that keeps
// up, and checks every total. It prints how fast the machine was beside
// its figures, and asserts none.
//
// With -speed it prints only the machine's speed; with -wait-drained it
// only waits until every queue of the cluster is empty.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// tlsFlags: the client certificate (default: the local cluster's admin one).
var tlsFlags cli.TLSFlags

func main() {
	redisAddr := flag.String("redis", cli.Env("CORRAL_REDIS_ADDR", "127.0.0.1:6379"), "Redis address (env CORRAL_REDIS_ADDR)")
	consul := flag.String("consul", cli.DefaultConsulAddr(), "Consul address, to verify totals through the workers")
	n := flag.Int("n", 50000, "donations to pre-load")
	partitions := flag.Int("partitions", sharding.DefaultPartitions, "partition count of the cluster")
	start := flag.String("start", "scripts/cluster.sh workers 3", "command that starts the workers")
	state := flag.String("state", cli.Env("CORRAL_STATE", ".corral"), "cluster state folder with the pid files, for CPU and memory figures (env CORRAL_STATE)")
	load := flag.Float64("load", 0.5, "latency is measured at this share of the burn-down's donations/s")
	rate := flag.Int("rate", 0, "donations/s submitted while latency is measured (0: -load × the burn-down)")
	loadFor := flag.Duration("load-for", 5*time.Second, "how long latency is measured under load")
	speedOnly := flag.Bool("speed", false, "only print the machine's speed (Redis round trip, CPU)")
	waitOnly := flag.Bool("wait-drained", false, "only wait until the cluster's queues are empty")
	tlsFlags.Register(flag.CommandLine, "dial the workers in plaintext (or CORRAL_TLS=off)")
	flag.Parse()
	var err error
	switch {
	case *speedOnly:
		err = printSpeed(*redisAddr)
	case *waitOnly:
		err = printDrained(*redisAddr, *partitions)
	default:
		err = run(*redisAddr, *consul, *n, *partitions, *start, *state, *load, *rate, *loadFor)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func printSpeed(redisAddr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	sp, err := measureSpeed(context.Background(), rdb)
	if err != nil {
		return err
	}
	fmt.Printf("machine speed: %s\n", sp)
	return nil
}

func printDrained(redisAddr string, partitions int) error {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	cfg := store.DefaultConfig()
	cfg.Partitions = partitions
	took, err := waitDrained(context.Background(), store.New(rdb, cfg), partitions, time.Second, 5*time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("queues empty after %.1fs (and for 1s since)\n", took.Seconds())
	return nil
}

func run(redisAddr, consul string, n, partitions int, start, state string, load float64, rate int, loadFor time.Duration) error {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", redisAddr, err)
	}
	cfg := store.DefaultConfig()
	cfg.Partitions = partitions
	st := store.New(rdb, cfg)
	if err := st.EnsurePartitions(ctx); err != nil {
		return err
	}
	all := make([]int, partitions)
	for p := range all {
		all[p] = p
	}
	if d, err := totalDepth(ctx, st, all); err != nil || d != 0 {
		return fmt.Errorf("the queues are not empty (%d jobs, err %v): run the benchmark on a fresh cluster", d, err)
	}

	sp, err := measureSpeed(ctx, rdb)
	if err != nil {
		return err
	}
	fmt.Printf("machine speed: %s\n", sp)

	// The latency load's donations continue this sequence once the
	// burn-down has set their number (Generate's output for more donations
	// starts with its output for fewer).
	spec := workload.Spec{Seed: uint64(time.Now().UnixNano()), Donations: n, Donors: n / 10, Campaigns: 50}
	jobs, _ := workload.Generate(spec)
	t0 := time.Now()
	if err := preload(ctx, st, jobs, partitions); err != nil {
		return err
	}
	ingest := time.Since(t0)
	fmt.Printf("pre-loaded %d donations in %.2fs (%.0f jobs/s enqueue, pipelined)\n", n, ingest.Seconds(), float64(n)/ingest.Seconds())

	cmdsBefore, err := commandCalls(ctx, rdb)
	if err != nil {
		return err
	}
	t1 := time.Now()
	cmd := exec.Command("sh", "-c", start)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start workers (%s): %w", start, err)
	}
	started := time.Since(t1)
	// The client is made once the workers run: they make the local
	// cluster's certificates on their first start.
	tlsCfg, _, err := tlsFlags.ClientConfig()
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{ConsulAddr: consul, TLS: tlsCfg})
	if err != nil {
		return err
	}
	defer c.Close()
	ps, err := findProcs(state)
	if err != nil {
		return fmt.Errorf("find the cluster's processes: %w", err)
	}
	cpu0 := ps.cpu()
	var firstDrop time.Duration
	polls := int64(0)
	for {
		d, q, err := depths(ctx, st, all)
		polls++
		if err != nil {
			return err
		}
		el := time.Since(t1)
		// A commit of donations adds as many credits to the queues as it
		// takes donations off, so the depths do not show the first commit;
		// the workers' commit counters do (asked only until then).
		if firstDrop == 0 && (q != int64(n) || d != int64(n) || committedAny(ctx, c)) {
			firstDrop = el
		}
		if d == 0 {
			break
		}
		if el > 10*time.Minute {
			return fmt.Errorf("still %d jobs queued after %v", d, el)
		}
		time.Sleep(20 * time.Millisecond)
	}
	drain := time.Since(t1)
	cpu1 := ps.cpu()
	cmdsAfter, err := commandCalls(ctx, rdb)
	if err != nil {
		return err
	}
	// The benchmark's own depth polls and the first INFO are not the jobs'.
	redisCalls := callsBetween(cmdsBefore, cmdsAfter, polls*3*int64(partitions)+1)

	burnDown := float64(n) / (drain - firstDrop).Seconds()
	if rate == 0 {
		rate = max(1, int(load*burnDown))
	}
	spec.Donations = n + int(float64(rate)*loadFor.Seconds())
	generated, exp := workload.Generate(spec)
	lat, err := latencyUnderLoad(ctx, st, generated[n:], partitions, rate)
	if err != nil {
		return err
	}
	for {
		d, err := totalDepth(ctx, st, all)
		if err != nil {
			return err
		}
		if d == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := workload.WaitFor(vctx, c, exp)
	if err != nil {
		return err
	}
	processing := drain - firstDrop
	fmt.Printf("workers up and healthy after %.2fs; first commit at %.2fs; drained at %.2fs\n", started.Seconds(), firstDrop.Seconds(), drain.Seconds())
	fmt.Printf("burn-down: %d donations + %d campaign credits = %d jobs in %.2fs: %.0f donations/s, %.0f jobs/s (from first commit to drained)\n",
		n, n, 2*n, processing.Seconds(), float64(n)/processing.Seconds(), float64(2*n)/processing.Seconds())
	jobsDone := float64(2 * n)
	fmt.Printf("verify: %s\n", rep)
	fmt.Println()
	fmt.Printf("| measure | value |\n|---|---|\n")
	fmt.Printf("| burn-down, donations/s (%d pre-loaded) | %.0f |\n", n, float64(n)/processing.Seconds())
	fmt.Printf("| burn-down, jobs/s (donations + campaign credits) | %.0f |\n", jobsDone/processing.Seconds())
	fmt.Printf("| enqueue, jobs/s (pipelined, grouped by partition) | %.0f |\n", float64(n)/ingest.Seconds())
	fmt.Printf("| job latency at %.0f%% load, p50 / p99 (%d donations/s for %v, %.0f/s submitted; submit → donation commit) | %s / %s |\n",
		100*float64(rate)/burnDown, rate, loadFor, lat.submitted, ms(lat.donation, 0.50), ms(lat.donation, 0.99))
	fmt.Printf("| end-to-end latency at that load, p50 / p99 (submit → its campaign credit commit) | %s / %s |\n", ms(lat.credit, 0.50), ms(lat.credit, 0.99))
	fmt.Printf("| Redis commands per job (Lua's included) | %.1f |\n", float64(redisCalls)/jobsDone)
	fmt.Printf("| CPU per job: redis / workers / plugins / total | %.1f / %.1f / %.1f / %.1f µs |\n",
		(cpu1.redis-cpu0.redis)/jobsDone*1e6, (cpu1.workers-cpu0.workers)/jobsDone*1e6, (cpu1.plugins-cpu0.plugins)/jobsDone*1e6,
		(cpu1.redis+cpu1.workers+cpu1.plugins-cpu0.redis-cpu0.workers-cpu0.plugins)/jobsDone*1e6)
	fmt.Printf("| peak RSS: worker / plugin (largest of %d each) | %.0f / %.0f MiB |\n", len(ps.workers),
		float64(peakRSS(ps.workers))/(1<<20), float64(peakRSS(ps.plugins))/(1<<20))
	fmt.Printf("| machine: Redis PING round trip, p50 | %.0f µs |\n", float64(sp.pingP50.Nanoseconds())/1e3)
	fmt.Printf("| machine: sha256 of %d MiB on one core (best of 3) | %.0f ms |\n", shaMiB, float64(sp.sha.Microseconds())/1e3)
	fmt.Printf("\nRedis time by command during the burn-down (EVALSHA includes its scripts' commands):\n%s", topCommands(cmdsBefore, cmdsAfter, jobsDone, 10))
	fmt.Println()
	if !rep.OK() {
		return fmt.Errorf("totals do not match")
	}
	return nil
}

func preload(ctx context.Context, st *store.Store, jobs []*workerpb.Job, partitions int) error {
	const chunk = 2000
	now := time.Now().UnixMilli()
	for i := 0; i < len(jobs); i += chunk {
		part := jobs[i:min(i+chunk, len(jobs))]
		batch := make([]store.Job, len(part))
		for k, j := range part {
			batch[k] = store.Job{ID: j.Id, Handler: j.Handler, Key: j.Key, Payload: j.Payload, Attempt: 1, SubmittedAt: now,
				Partition: sharding.PartitionOf(j.Key, partitions)}
		}
		res, err := st.Enqueue(ctx, batch)
		if err != nil {
			return err
		}
		for _, r := range res {
			if r.Err != nil {
				return r.Err
			}
		}
	}
	return nil
}

// committedAny says whether a worker has committed a job yet.
func committedAny(ctx context.Context, c *client.Client) bool {
	st, err := c.Status(ctx)
	if err != nil {
		return false
	}
	for _, m := range st.Members {
		if m.Committed > 0 {
			return true
		}
	}
	return false
}

// depths is the total depth of the partitions (queues, outboxes, delayed,
// parked and waiting jobs) and the part of it in the queues, read as
// store.Backlogs reads it.
func depths(ctx context.Context, st *store.Store, parts []int) (total, queued int64, err error) {
	bs, err := st.Backlogs(ctx, parts)
	if err != nil {
		return 0, 0, fmt.Errorf("depth: %w", err)
	}
	for _, b := range bs {
		queued += b.Queued
		total += b.Depth()
	}
	return total, queued, nil
}

func totalDepth(ctx context.Context, st *store.Store, parts []int) (int64, error) {
	d, err := st.Depth(ctx, parts)
	var sum int64
	for _, v := range d {
		sum += v
	}
	return sum, err
}
