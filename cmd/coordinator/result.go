package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/cli"
)

func resultCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("result", flag.ContinueOnError)
	wait := fs.Duration("wait", 0, "wait up to this long for an unfinished job")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator result [--wait D] [-o table|json] ID\n\nPrints a finished job's result (JSON), or why it has none: a job that was\ndead-lettered, that its handler rejected (with the handler's reason) or\nthat was cancelled, or one not finished yet (with its state, as 'jobs\nshow' names it), exits non-zero.\nWith -o json it prints {id, state, result, error, attempts} whatever the\nstate, and still exits non-zero unless the job is done.\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("result needs one job ID, got %d arguments", fs.NArg())
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout+*wait)
	defer cancel()
	if out.json() {
		rs, err := c.Results(ctx, *wait, fs.Arg(0))
		if err != nil {
			return err
		}
		if len(rs) != 1 {
			return fmt.Errorf("asked for one result, got %d", len(rs))
		}
		if rs[0].Id == "" {
			rs[0].Id = fs.Arg(0)
		}
		if err := printJSON(stdout, toResultJSON(rs[0])); err != nil {
			return err
		}
		if rs[0].State != workerpb.JobResult_DONE {
			return fmt.Errorf("job %s is %s", fs.Arg(0), client.StateName(rs[0].State))
		}
		return nil
	}
	return printResult(ctx, c, fs.Arg(0), *wait, stdout)
}

// rejected is the error of a job its handler rejected: the handler's
// answer, so the command fails with it.
func rejected(id, reason string) error {
	return fmt.Errorf("job %s was rejected: %s", id, reason)
}

// cancelled is the error of a job that was cancelled before it ran.
func cancelled(id, lastErr string) error {
	if lastErr != "" {
		return fmt.Errorf("job %s was cancelled (its last attempt had failed: %s)", id, lastErr)
	}
	return fmt.Errorf("job %s was cancelled", id)
}

// unfinished says what a job not finished does now, in the words of
// 'jobs show': queued, delayed until, retrying at, running on.
func unfinished(ctx context.Context, c *client.Client, id string) string {
	js, err := c.Jobs(ctx, id)
	if err != nil || len(js) != 1 {
		return "it stays queued"
	}
	j := js[0]
	out := client.StateName(j.State)
	switch j.State {
	case workerpb.JobResult_DELAYED:
		out += " until " + msTime(j.NextRunMs)
	case workerpb.JobResult_RETRYING:
		out += fmt.Sprintf(" (attempt %d at %s)", j.Attempts+1, msTime(j.NextRunMs))
	case workerpb.JobResult_RUNNING:
		out += " on " + j.Worker
	}
	if j.CancelRequested {
		out += "; a cancel of it waits to be applied"
	}
	return out
}

// printResult prints a job's result and fails unless the job is done.
func printResult(ctx context.Context, c *client.Client, id string, wait time.Duration, stdout io.Writer) error {
	rs, err := c.Results(ctx, wait, id)
	if err != nil {
		return err
	}
	if len(rs) != 1 {
		return fmt.Errorf("asked for one result, got %d", len(rs))
	}
	r := rs[0]
	switch r.State {
	case workerpb.JobResult_DONE:
		if len(r.Result) == 0 {
			fmt.Fprintln(stdout, "null")
		} else {
			fmt.Fprintln(stdout, string(r.Result))
		}
		return nil
	case workerpb.JobResult_DEAD:
		return fmt.Errorf("job %s was dead-lettered after %s: %s ('coordinator dlq show %s')", id, cli.Attempts(r.Attempts), r.Error, id)
	case workerpb.JobResult_REJECTED:
		return rejected(id, r.Error)
	case workerpb.JobResult_CANCELLED:
		return cancelled(id, r.Error)
	case workerpb.JobResult_QUEUED:
		now := unfinished(ctx, c, id)
		if wait > 0 {
			return fmt.Errorf("job %s is not finished after %v: %s", id, wait, now)
		}
		return fmt.Errorf("job %s is not finished yet: %s", id, now)
	}
	return errors.New("no job " + id + " (never submitted, or its record expired)")
}
