package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// TestJobsCommandsRefuseBadInput: jobs and its commands say what is
// missing before they look for a cluster, and each has its --help.
func TestJobsCommandsRefuseBadInput(t *testing.T) {
	for args, want := range map[string]string{
		"jobs":                             "jobs needs list, show or cancel",
		"jobs stop x":                      `unknown jobs command "stop"`,
		"jobs list":                        "jobs list needs --state",
		"jobs list --state finished":       `no job state "finished": give one of queued, delayed, retrying, running, done, dead, rejected, cancelled`,
		"jobs list --state done --limit 0": "--limit must be at least 1",
		"jobs show":                        "jobs show needs one job ID",
		"jobs cancel":                      "jobs cancel needs job IDs",
	} {
		var out, errb bytes.Buffer
		err := run(append([]string{"--consul", "127.0.0.1:1"}, strings.Fields(args)...), nil, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
	for _, args := range []string{"jobs --help", "jobs list --help", "jobs show --help", "jobs cancel --help"} {
		var out, errb bytes.Buffer
		if err := run(strings.Fields(args), nil, &out, &errb); err != nil || !strings.Contains(errb.String(), "Usage: coordinator jobs") {
			t.Errorf("%s: %v\n%s", args, err, errb.String())
		}
	}
}

func TestPrintJobs(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	var b bytes.Buffer
	printJobs(&b, []*workerpb.JobInfo{
		{Id: "j1", State: workerpb.JobResult_RETRYING, Handler: "donor.donate", Key: "alice", Partition: 3, Attempts: 2,
			NextRunMs: at, SubmittedAtMs: at - 5000, Error: "attempt 2: boom", CancelRequested: true},
		{Id: "j2", State: workerpb.JobResult_DONE, Handler: "donor.donate", Key: "bob", Partition: 5, Attempts: 1, FinishedAtMs: at},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "STATE") {
		t.Fatalf("want a header and two rows:\n%s", b.String())
	}
	if !strings.Contains(lines[1], "retrying") || !strings.Contains(lines[1], "2026-01-02T03:04:05Z") ||
		!strings.HasSuffix(lines[1], "attempt 2: boom; cancel asked") || !strings.Contains(lines[2], "done") {
		t.Fatalf("rows:\n%s", b.String())
	}
}
