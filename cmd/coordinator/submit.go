package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

// submitBatch is how many jobs go in one Submit call from a file.
const submitBatch = 500

// submitLanes is how many Submit calls from a file are in flight at once.
// All jobs of a key go through one lane, in file order, so per-key order
// holds while the lanes overlap their round trips.
const submitLanes = 4

// submitLane is one lane's batch: jobs and their line numbers.
type submitLane struct {
	jobs  []*workerpb.Job
	lines []int
}

// laneOf picks a key's lane.
func laneOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % submitLanes)
}

// fileJob is one line of a submit file.
type fileJob struct {
	ID      string          `json:"id"`
	Handler string          `json:"handler"`
	Key     string          `json:"key"`
	Payload json.RawMessage `json:"payload"`
}

func submitCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	handler := fs.String("handler", "", "handler name, e.g. donor.donate")
	key := fs.String("key", "", "entity key; decides the partition")
	payload := fs.String("payload", "", "JSON payload")
	id := fs.String("id", "", "job id, the idempotency key (generated when empty)")
	file := fs.String("file", "", `JSON lines file of {"id","handler","key","payload"} (- for stdin)`)
	onError := fs.String("on-error", "skip", "with --file: on a bad line or rejected job, skip (report and go on) or stop")
	quiet := fs.Bool("quiet", false, "with --file: print only the summary")
	in := fs.Duration("in", 0, "delay: run the job this long from now (e.g. 30s)")
	at := fs.String("at", "", "delay: run the job at this time (RFC 3339)")
	wait := fs.Bool("wait", false, "wait for the job to finish and print its result")
	waitTimeout := fs.Duration("timeout", 30*time.Second, "with --wait: how long to wait for the result")
	maxAttempts := fs.Int("max-attempts", 0, "attempts before dead-lettering (0: the handler's)")
	jobTimeout := fs.Duration("job-timeout", 0, "deadline of one attempt, at most the handler's (0: the handler's)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator submit --handler H --key K --payload JSON [--id ID] [--in D | --at T] [--wait [--timeout D]]\n       coordinator submit --file F.jsonl [--on-error skip|stop]\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if *onError != "skip" && *onError != "stop" {
		return fmt.Errorf("--on-error must be skip or stop, got %q", *onError)
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if *file != "" {
		if *handler != "" || *key != "" || *payload != "" || *id != "" {
			return errors.New("give either --file or --handler/--key/--payload, not both")
		}
		return submitFile(ctx, c, *file, *onError == "stop", *quiet, stdin, stdout, stderr)
	}
	if *in < 0 {
		return fmt.Errorf("--in must not be negative, got %v", *in)
	}
	if *in > 0 && *at != "" {
		return errors.New("give either --in or --at, not both")
	}
	var notBefore int64
	if *in > 0 {
		notBefore = time.Now().Add(*in).UnixMilli()
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("--at %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", *at)
		}
		notBefore = t.UnixMilli()
	}
	if *maxAttempts < 0 || *jobTimeout < 0 {
		return errors.New("--max-attempts and --job-timeout must not be negative")
	}
	keySet := false // an empty --key "" goes to the worker, which says why it is refused
	fs.Visit(func(f *flag.Flag) { keySet = keySet || f.Name == "key" })
	if *handler == "" || !keySet || *payload == "" {
		return errors.New("submit needs --handler, --key and --payload (or --file); see submit --help")
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	res, err := c.Submit(ctx, []*workerpb.Job{{Id: *id, Handler: *handler, Key: *key, Payload: []byte(*payload),
		NotBeforeMs: notBefore, MaxAttempts: int32(*maxAttempts), TimeoutMs: jobTimeout.Milliseconds()}})
	if err != nil {
		return err
	}
	r := res[0]
	if r.Error != "" {
		return errors.New(r.Error)
	}
	note := ""
	if r.Duplicate {
		note = " (duplicate: already submitted, not enqueued again)"
	}
	if *wait {
		fmt.Fprintf(stderr, "%s partition=%d%s\n", r.Id, r.Partition, note)
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), *waitTimeout+g.timeout)
		defer wcancel()
		return printResult(wctx, c, r.Id, *waitTimeout, stdout)
	}
	fmt.Fprintf(stdout, "%s partition=%d%s\n", r.Id, r.Partition, note)
	return nil
}

type submitStats struct {
	lines, submitted, duplicates, rejected int
}

func submitFile(ctx context.Context, c *client.Client, path string, stopOnError, quiet bool, stdin io.Reader, stdout, stderr io.Writer) error {
	in := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	start := time.Now()
	var (
		mu       sync.Mutex // guards st, fatal and the output
		st       submitStats
		fatal    error
		stop     atomic.Bool // a lane failed, or rejected a job under --on-error stop
		wg       sync.WaitGroup
		lanes    [submitLanes]submitLane
		lastSeen = start
	)
	send := func(b submitLane) {
		res, err := c.Submit(ctx, b.jobs)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if fatal == nil {
				fatal = fmt.Errorf("submit lines %d-%d: %w (jobs of other lines may have been accepted)", b.lines[0], b.lines[len(b.lines)-1], err)
			}
			stop.Store(true)
			return
		}
		for i, r := range res {
			switch {
			case r.Error != "":
				st.rejected++
				fmt.Fprintf(stderr, "line %d: rejected: %s\n", b.lines[i], r.Error)
			case r.Duplicate:
				st.duplicates++
			default:
				st.submitted++
			}
		}
		if stopOnError && st.rejected > 0 {
			stop.Store(true)
		}
	}
	queues := make([]chan submitLane, submitLanes)
	for i := range queues {
		queues[i] = make(chan submitLane, 1)
		wg.Add(1)
		go func(q chan submitLane) {
			defer wg.Done()
			for b := range q {
				if !stop.Load() {
					send(b)
				}
			}
		}(queues[i])
	}
	flush := func(i int) {
		if len(lanes[i].jobs) > 0 {
			queues[i] <- lanes[i]
			lanes[i] = submitLane{}
		}
	}
	finish := func() {
		for i := range lanes {
			flush(i)
			close(queues[i])
		}
		wg.Wait()
	}
	var malformed error
	for !stop.Load() && sc.Scan() {
		st.lines++
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var fj fileJob
		if err := json.Unmarshal(line, &fj); err != nil {
			mu.Lock()
			st.rejected++
			fmt.Fprintf(stderr, "line %d: malformed JSON: %v\n", st.lines, err)
			mu.Unlock()
			if stopOnError {
				malformed = fmt.Errorf("stopped at line %d (--on-error stop)", st.lines)
				break
			}
			continue
		}
		l := laneOf(fj.Key)
		lanes[l].jobs = append(lanes[l].jobs, &workerpb.Job{Id: fj.ID, Handler: fj.Handler, Key: fj.Key, Payload: []byte(fj.Payload)})
		lanes[l].lines = append(lanes[l].lines, st.lines)
		if len(lanes[l].jobs) >= submitBatch {
			flush(l)
		}
		if !quiet && time.Since(lastSeen) > time.Second {
			lastSeen = time.Now()
			mu.Lock()
			fmt.Fprintf(stderr, "... %d lines, %d submitted\n", st.lines, st.submitted)
			mu.Unlock()
		}
	}
	scanErr := sc.Err()
	finish()
	if fatal != nil {
		return fatal
	}
	if malformed != nil {
		return malformed
	}
	if scanErr != nil {
		return fmt.Errorf("read %s at line %d: %w", path, st.lines+1, scanErr)
	}
	if stopOnError && st.rejected > 0 {
		return fmt.Errorf("stopped at the first rejected job (--on-error stop)")
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "submitted %d, duplicates %d, rejected %d, in %.2fs (%.0f jobs/s)\n",
		st.submitted, st.duplicates, st.rejected, el.Seconds(), float64(st.submitted+st.duplicates)/el.Seconds())
	if st.rejected > 0 {
		return fmt.Errorf("%d of %d lines rejected", st.rejected, st.lines)
	}
	return nil
}
