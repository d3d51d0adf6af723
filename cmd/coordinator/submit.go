package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

// submitBatch is how many jobs go in one Submit call from a file.
const submitBatch = 500

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
	var st submitStats
	var batch []*workerpb.Job
	var lineOf []int
	lastReport := start
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := c.Submit(ctx, batch)
		if err != nil {
			return fmt.Errorf("submit lines %d-%d: %w (jobs before line %d were accepted)", lineOf[0], lineOf[len(lineOf)-1], err, lineOf[0])
		}
		for i, r := range res {
			switch {
			case r.Error != "":
				st.rejected++
				fmt.Fprintf(stderr, "line %d: rejected: %s\n", lineOf[i], r.Error)
			case r.Duplicate:
				st.duplicates++
			default:
				st.submitted++
			}
		}
		batch, lineOf = batch[:0], lineOf[:0]
		if stopOnError && st.rejected > 0 {
			return fmt.Errorf("stopped at the first rejected job (--on-error stop)")
		}
		if !quiet && time.Since(lastReport) > time.Second {
			lastReport = time.Now()
			fmt.Fprintf(stderr, "... %d lines, %d submitted\n", st.lines, st.submitted)
		}
		return nil
	}
	for sc.Scan() {
		st.lines++
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var fj fileJob
		if err := json.Unmarshal(line, &fj); err != nil {
			st.rejected++
			fmt.Fprintf(stderr, "line %d: malformed JSON: %v\n", st.lines, err)
			if stopOnError {
				return fmt.Errorf("stopped at line %d (--on-error stop)", st.lines)
			}
			continue
		}
		batch = append(batch, &workerpb.Job{Id: fj.ID, Handler: fj.Handler, Key: fj.Key, Payload: []byte(fj.Payload)})
		lineOf = append(lineOf, st.lines)
		if len(batch) >= submitBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s at line %d: %w", path, st.lines+1, err)
	}
	if err := flush(); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "submitted %d, duplicates %d, rejected %d, in %.2fs (%.0f jobs/s)\n",
		st.submitted, st.duplicates, st.rejected, el.Seconds(), float64(st.submitted+st.duplicates)/el.Seconds())
	if st.rejected > 0 {
		return fmt.Errorf("%d of %d lines rejected", st.rejected, st.lines)
	}
	return nil
}
