// Command bench is the burn-down benchmark: it pre-loads donations straight
// into the partition queues, starts the workers with a command you give,
// and reports how fast they drain (every donation and the campaign credit
// it emits), then checks every total. It prints figures; it asserts none.
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

func main() {
	redisAddr := flag.String("redis", cli.Env("CORRAL_REDIS_ADDR", "127.0.0.1:6379"), "Redis address (env CORRAL_REDIS_ADDR)")
	consul := flag.String("consul", cli.DefaultConsulAddr(), "Consul address, to verify totals through the workers")
	n := flag.Int("n", 50000, "donations to pre-load")
	partitions := flag.Int("partitions", sharding.DefaultPartitions, "partition count of the cluster")
	start := flag.String("start", "scripts/cluster.sh workers 3", "command that starts the workers")
	flag.Parse()
	if err := run(*redisAddr, *consul, *n, *partitions, *start); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(redisAddr, consul string, n, partitions int, start string) error {
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

	jobs, exp := workload.Generate(workload.Spec{Seed: uint64(time.Now().UnixNano()), Donations: n, Donors: n / 10, Campaigns: 50})
	t0 := time.Now()
	if err := preload(ctx, st, jobs, partitions); err != nil {
		return err
	}
	ingest := time.Since(t0)
	fmt.Printf("pre-loaded %d donations in %.2fs (%.0f jobs/s enqueue, pipelined)\n", n, ingest.Seconds(), float64(n)/ingest.Seconds())

	t1 := time.Now()
	cmd := exec.Command("sh", "-c", start)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start workers (%s): %w", start, err)
	}
	started := time.Since(t1)
	var firstDrop time.Duration
	for {
		d, err := totalDepth(ctx, st, all)
		if err != nil {
			return err
		}
		el := time.Since(t1)
		if firstDrop == 0 && d < int64(n) {
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
	c, err := client.New(client.Config{ConsulAddr: consul})
	if err != nil {
		return err
	}
	defer c.Close()
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := workload.WaitFor(vctx, c, exp)
	if err != nil {
		return err
	}
	processing := drain - firstDrop
	fmt.Printf("workers up and healthy after %.2fs; first commit seen at %.2fs; drained at %.2fs\n", started.Seconds(), firstDrop.Seconds(), drain.Seconds())
	fmt.Printf("burn-down: %d donations + %d campaign credits = %d jobs in %.2fs: %.0f donations/s, %.0f jobs/s (from first commit to drained)\n",
		n, n, 2*n, processing.Seconds(), float64(n)/processing.Seconds(), float64(2*n)/processing.Seconds())
	fmt.Printf("verify: %s\n", rep)
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

func totalDepth(ctx context.Context, st *store.Store, parts []int) (int64, error) {
	d, err := st.Depth(ctx, parts)
	var sum int64
	for _, v := range d {
		sum += v
	}
	return sum, err
}
