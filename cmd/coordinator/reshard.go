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
)

func reshardCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reshard", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	n := fs.Int("partitions", 0, "the new partition count, a multiple of the current one; without it, report the reshard under way or the last one")
	wait := fs.Bool("wait", true, "follow the reshard until every partition is split, printing progress to stderr")
	stall := fs.Duration("stall", 2*time.Minute, "with --wait, give up following when no partition was split for this long (the reshard goes on)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator reshard [--partitions N] [--wait=false] [--stall D] [-o table|json]

Changes the partition count of the running cluster to N, a multiple of the
current count P: each partition's owner splits it into N/P partitions (all
of them at once), while jobs keep flowing. Submits to a partition being
split wait a moment (its moving keys' queued jobs, states, delayed and
parked jobs and schedules are copied to its new partitions) and then go on;
no job is lost or applied twice, and each key's jobs keep their order.

Without --partitions it reports the reshard under way, or the last one.
Running it again with the same N follows a reshard started earlier; another
N while one is under way is refused, and so is a new reshard within the dedup
window (--dedup-window, 24h) after the last one ended: jobs finished before
it are looked up in their keys' old partitions until then.

Flags:`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return usageError{fmt.Errorf("reshard takes no arguments, got %q (did you mean --partitions %s?)", fs.Arg(0), fs.Arg(0))}
	}
	if *n < 0 {
		return usageError{fmt.Errorf("--partitions must be positive, got %d", *n)}
	}
	outer := ctx
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	r, err := c.Reshard(ctx, *n)
	if err != nil {
		return err
	}
	if *wait && r.To > 0 {
		last, moved := int32(-1), time.Now()
		for r.To > 0 {
			if r.Split != last {
				fmt.Fprintf(stderr, "reshard %d → %d: %d of %d partitions split (%s)\n", r.Partitions, r.To, r.Split, r.Partitions, time.Since(start).Round(100*time.Millisecond))
				last, moved = r.Split, time.Now()
			}
			if *stall > 0 && time.Since(moved) > *stall {
				return fmt.Errorf("no partition was split for %v (%d of %d split): the reshard goes on, but something stops its splits; the workers' logs say what (\"splitting a partition failed\"); run coordinator reshard to follow it again", *stall, r.Split, r.Partitions)
			}
			select {
			case <-outer.Done():
				return errors.New("stopped following the reshard; it goes on (run coordinator reshard to see it)")
			case <-time.After(500 * time.Millisecond):
			}
			pctx, cancel := context.WithTimeout(outer, g.timeout)
			r, err = c.Reshard(pctx, 0)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	pctx, cancel := context.WithTimeout(outer, g.timeout)
	defer cancel()
	if longest, err := c.ReshardLongestPause(pctx); err == nil {
		r.LongestPauseMs = max(r.LongestPauseMs, longest)
	}
	return printReshard(stdout, out, r)
}

func printReshard(w io.Writer, out *output, r *workerpb.ReshardResponse) error {
	state := "none"
	switch {
	case r.To > 0:
		state = "under way"
	case r.Previous > 0:
		state = "done"
	}
	if out.json() {
		return printJSON(w, map[string]any{"partitions": r.Partitions, "to": r.To, "split": r.Split, "previous": r.Previous,
			"state": state, "longest_pause_ms": r.LongestPauseMs, "started_ms": r.StartedMs, "ended_ms": r.EndedMs})
	}
	switch state {
	case "under way":
		fmt.Fprintf(w, "reshard %d → %d under way: %d of %d partitions split, longest pause so far %d ms\n", r.Partitions, r.To, r.Split, r.Partitions, r.LongestPauseMs)
	case "done":
		took := ""
		if r.EndedMs > r.StartedMs && r.StartedMs > 0 {
			took = fmt.Sprintf(" in %s", (time.Duration(r.EndedMs-r.StartedMs) * time.Millisecond).Round(100*time.Millisecond))
		}
		fmt.Fprintf(w, "%d partitions (resharded from %d%s); longest pause of a partition: %d ms (on the workers alive now)\n", r.Partitions, r.Previous, took, r.LongestPauseMs)
	default:
		fmt.Fprintf(w, "%d partitions; never resharded\n", r.Partitions)
	}
	return nil
}
