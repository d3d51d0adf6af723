package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

const jobsUsage = `Usage: coordinator jobs list --state S [--handler H] [--key K] [--partition P] [--limit N] [--after CURSOR]
       coordinator jobs show ID
       coordinator jobs cancel [--wait D] ID...

Looks at jobs and cancels them. A job's state is one of:
  queued     in its partition's queue, or waiting behind a job of its key
  delayed    held until its not-before time (submit --in / --at)
  retrying   an attempt failed; it waits for the next and holds its key
  running    in the batch its partition's owner runs now
  done       applied (listed while its record is kept: --dedup-window,
             --result-retention)
  dead       dead-lettered after its attempts ('coordinator dlq')
  rejected   its handler refused it (sdk.Reject)
  cancelled  cancelled before it ran, or before its next attempt

Run "coordinator jobs COMMAND --help" for a command's flags.`

func jobsCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, jobsUsage)
		if len(args) == 0 {
			return errors.New("jobs needs list, show or cancel")
		}
		return nil
	}
	switch args[0] {
	case "list":
		return jobsList(ctx, g, newClient, args[1:], stdout, stderr)
	case "show":
		return jobsShow(ctx, g, newClient, args[1:], stdout, stderr)
	case "cancel":
		return jobsCancel(ctx, g, newClient, args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, jobsUsage)
	return fmt.Errorf("unknown jobs command %q", args[0])
}

func jobsList(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs list", flag.ContinueOnError)
	state := fs.String("state", "", "queued, delayed, retrying, running, done, dead, rejected or cancelled (required)")
	handler := fs.String("handler", "", "only jobs of this handler")
	key := fs.String("key", "", "only jobs of this key (reads its partition only)")
	partition := fs.Int("partition", -1, "only jobs of this partition")
	limit := fs.Int("limit", 100, "jobs to print")
	after := fs.String("after", "", "go on from the cursor a listing printed")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator jobs list --state S [--handler H] [--key K] [--partition P] [--limit N] [--after CURSOR] [-o table|json]

Lists the jobs in one state, partition by partition: queued ones in queue
order and then those waiting behind a job of their key, delayed ones by due
time, retrying ones by key, dead ones by the time they died, done, rejected
and cancelled ones in the order they finished. WHEN is the next run of a
delayed or retrying job, the finish of a finished one, the submission of
the others. A queued or retrying job that is in a batch in flight shows as
running, with the worker that runs it; "--state running" asks every worker
for the jobs it runs now (a worker that cannot be asked is named).

When more jobs are left than --limit, the command prints a cursor on
stderr: --after CURSOR goes on from there. A listing sees each job that
stays where it is once; jobs that move meanwhile (run, retry, fall due)
may be missed or seen in two states.

Flags:`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("jobs list takes no arguments, got %q", fs.Args())
	}
	if *state == "" {
		fs.Usage()
		return errors.New("jobs list needs --state")
	}
	st, err := client.ParseState(*state)
	if err != nil {
		return err
	}
	if *limit < 1 {
		return fmt.Errorf("--limit must be at least 1, got %d", *limit)
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	req := &workerpb.ListJobsRequest{State: st, Handler: *handler, Key: *key, After: *after}
	if *partition >= 0 {
		p := int32(*partition)
		req.Partition = &p
	}
	var jobs []*workerpb.JobInfo
	unreachable := map[string]bool{}
	for len(jobs) < *limit {
		req.Limit = int32(min(*limit-len(jobs), 500))
		resp, err := c.ListJobs(ctx, req)
		if err != nil {
			return err
		}
		jobs = append(jobs, resp.Jobs...)
		for _, u := range resp.Unreachable {
			unreachable[u] = true
		}
		req.After = resp.Next
		if resp.Next == "" {
			break
		}
	}
	for u := range unreachable {
		fmt.Fprintf(stderr, "could not ask %s which jobs it runs: its jobs show as Redis has them\n", u)
	}
	if out.json() {
		rows := []jobJSON{}
		for _, j := range jobs {
			rows = append(rows, toJobJSON(j))
		}
		if err := printJSON(stdout, map[string]any{"jobs": rows, "next": req.After}); err != nil {
			return err
		}
		return nil
	}
	if len(jobs) == 0 && req.After == "" {
		fmt.Fprintf(stderr, "no %s jobs\n", client.StateName(st))
		return nil
	}
	printJobs(stdout, jobs)
	if req.After != "" {
		fmt.Fprintf(stderr, "(%d jobs; more may follow: --after %s)\n", len(jobs), req.After)
	}
	return nil
}

// printJobs prints jobs as a table.
func printJobs(w io.Writer, jobs []*workerpb.JobInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tHANDLER\tKEY\tPARTITION\tATTEMPTS\tWHEN\tNOTE")
	for _, j := range jobs {
		when := j.SubmittedAtMs
		switch {
		case j.State == workerpb.JobResult_DELAYED || j.State == workerpb.JobResult_RETRYING:
			when = j.NextRunMs
		case j.FinishedAtMs > 0:
			when = j.FinishedAtMs
		}
		note := j.Note
		if j.Error != "" && j.State != workerpb.JobResult_DONE {
			note = strings.TrimPrefix(note+"; ", "; ") + j.Error
		}
		if j.CancelRequested {
			note = strings.TrimPrefix(note+"; ", "; ") + "cancel asked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", j.Id, client.StateName(j.State), j.Handler, j.Key, j.Partition,
			j.Attempts, msTime(when), strings.ReplaceAll(note, "\n", " "))
	}
	tw.Flush()
}

// msTime prints unix ms as an RFC 3339 time, UTC; "-" for none.
func msTime(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func jobsShow(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs show", flag.ContinueOnError)
	out := outputFlag(fs, outputJSON)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator jobs show [-o json|table] ID

Prints what is known of a job, as JSON: its state, handler, key, partition,
attempts, next run (delayed, retrying), error history, result, payload (when
its body is at hand), when it was submitted and finished, and whether a
cancel waits to be applied. A job in a batch in flight is "running", with
the worker that runs it. A job nobody knows (never submitted, or its record
expired after the dedup window) exits non-zero.

Flags:`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("jobs show needs one job ID, got %d arguments", fs.NArg())
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	jobs, err := c.Jobs(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if len(jobs) != 1 {
		return fmt.Errorf("asked for one job, got %d", len(jobs))
	}
	j := jobs[0]
	if j.State == workerpb.JobResult_UNKNOWN {
		if j.Note != "" {
			return fmt.Errorf("job %s: %s", j.Id, j.Note)
		}
		return fmt.Errorf("no job %s (never submitted, or its record expired)", j.Id)
	}
	if out.json() {
		return printJSON(stdout, toJobJSON(j))
	}
	return printFields(stdout, toJobJSON(j))
}

// rawJSON is b as JSON if it is, else as a string.
func rawJSON(b []byte) any {
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	return string(b)
}

func jobsCancel(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs cancel", flag.ContinueOnError)
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the owners to apply the cancels")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator jobs cancel [--wait D] [-o table|json] ID...

Cancels queued, delayed and retrying jobs. The owner of each job's partition
applies the cancel in the same fenced commit that would otherwise have run
or parked the job, so a job either ran or is cancelled, never both, and
'coordinator jobs show ID' says which. A cancelled retrying job frees its
key for the key's later jobs. A job whose attempt runs now is not cut
short: if the attempt commits, the job has run; if it asks for a retry, the
retry is cancelled. A cancelled job's id stays taken for the dedup window:
submitting it again answers that it was cancelled.

Prints one line per job. Exits non-zero unless every job is cancelled (now
or before): a job that already finished cannot be cancelled, and one whose
cancel was not applied within --wait (further down a long queue, or its
attempt still running) is cancelled when its owner reaches it, unless that
attempt commits.

Flags:`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	ids := fs.Args()
	if len(ids) == 0 {
		fs.Usage()
		return errors.New("jobs cancel needs job IDs")
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout+*wait)
	defer cancel()
	rs, err := c.Cancel(ctx, *wait, ids...)
	if err != nil {
		return err
	}
	notCancelled, pending := 0, 0
	if out.json() {
		rows := []cancelJSON{}
		for _, r := range rs {
			rows = append(rows, cancelJSON{ID: r.Id, State: client.StateName(r.State), Cancelled: r.Cancelled, Pending: r.Pending, Message: r.Message})
		}
		if err := printJSON(stdout, rows); err != nil {
			return err
		}
	}
	for _, r := range rs {
		if !out.json() {
			fmt.Fprintf(stdout, "%s: %s\n", r.Id, r.Message)
		}
		switch {
		case r.Pending:
			pending++
		case r.State != workerpb.JobResult_CANCELLED:
			notCancelled++
		}
	}
	switch {
	case notCancelled > 0 && pending > 0:
		return fmt.Errorf("%d of %d jobs not cancelled, %d cancels not applied yet ('coordinator jobs show ID' tells how they end)", notCancelled, len(rs), pending)
	case notCancelled > 0:
		return fmt.Errorf("%d of %d jobs not cancelled", notCancelled, len(rs))
	case pending > 0:
		return fmt.Errorf("%d of %d cancels not applied yet ('coordinator jobs show ID' tells how they end)", pending, len(rs))
	}
	return nil
}
