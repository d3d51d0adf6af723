package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

func TestScheduleHelp(t *testing.T) {
	for _, args := range [][]string{
		{"schedule", "--help"}, {"schedule", "add", "--help"}, {"schedule", "list", "--help"},
		{"schedule", "show", "--help"}, {"schedule", "pause", "--help"}, {"schedule", "resume", "--help"},
		{"schedule", "delete", "--help"},
	} {
		var out, errb bytes.Buffer
		if err := run(args, nil, &out, &errb); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.Contains(errb.String(), "Usage: coordinator schedule") {
			t.Errorf("%v prints no usage:\n%s", args, errb.String())
		}
	}
	var errb bytes.Buffer
	if err := run([]string{"schedule", "add", "--help"}, nil, io.Discard, &errb); err != nil || !strings.Contains(errb.String(), "--catch-up") ||
		!strings.Contains(errb.String(), "-tz") || !strings.Contains(errb.String(), "@every") {
		t.Errorf("schedule add --help: %v\n%s", err, errb.String())
	}
}

// Bad definitions are refused before any worker is asked (no Consul here).
func TestScheduleAddChecksFirst(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"nightly", "--cron", "@every 1s", "--handler", "h", "--key", "k"}, "needs --cron, --handler, --key and --payload"},
		{[]string{"nightly", "--cron", "@every 1.5s", "--handler", "h", "--key", "k", "--payload", "{}"}, "whole seconds"},
		{[]string{"nightly", "--cron", "0 9 * * *", "--tz", "Europe/Atlantis", "--handler", "h", "--key", "k", "--payload", "{}"}, "unknown time zone"},
		{[]string{"nightly", "--cron", "0 9 * * *", "--catch-up", "some", "--handler", "h", "--key", "k", "--payload", "{}"}, "none, one or all"},
		{[]string{"a~b", "--cron", "0 9 * * *", "--handler", "h", "--key", "k", "--payload", "{}"}, "invalid schedule name"},
		{[]string{"--cron", "0 9 * * *", "--handler", "h", "--key", "k", "--payload", "{}"}, "needs a NAME"},
	} {
		err := run(append([]string{"--consul", "127.0.0.1:1", "schedule", "add"}, c.args...), nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v: %v, want it to say %q", c.args, err, c.says)
		}
	}
}

func TestParseNamed(t *testing.T) {
	for _, args := range [][]string{{"nightly", "--x", "1"}, {"--x", "1", "nightly"}} {
		fs := flag.NewFlagSet("add", flag.ContinueOnError)
		x := fs.String("x", "", "")
		name, done, err := parseNamed(fs, args, io.Discard)
		if name != "nightly" || done || err != nil || *x != "1" {
			t.Errorf("%v: %q %v %v, x=%q", args, name, done, err, *x)
		}
	}
}

func TestPrintSchedules(t *testing.T) {
	fired := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printSchedules(&b, []*workerpb.Schedule{
		{Name: "nightly", Cron: "0 9 * * *", Tz: "Europe/Paris", Handler: "donor.donate", Key: "alice", CatchUp: "one",
			LastFiredMs: fired.UnixMilli(), NextTickMs: fired.Add(24 * time.Hour).UnixMilli()},
		{Name: "often", Cron: "@every 1s", Handler: "donor.donate", Key: "bob", CatchUp: "all", Paused: true},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "NEXT TICK") {
		t.Fatalf("want a header and two rows:\n%s", b.String())
	}
	if !strings.Contains(lines[1], "2026-03-01T09:00:00+01:00") || !strings.Contains(lines[1], "2026-03-02T09:00:00+01:00") || !strings.Contains(lines[1], "active") {
		t.Errorf("ticks in the schedule's zone: %s", lines[1])
	}
	if !strings.Contains(lines[2], "paused") || !strings.Contains(lines[2], "UTC") {
		t.Errorf("paused row: %s", lines[2])
	}
	show := scheduleJSON(&workerpb.Schedule{Name: "nightly", LastFiredMs: fired.UnixMilli(), Payload: []byte(`{}`)})
	if show["last_job"] != "s~nightly~1772352000" {
		t.Errorf("last job %v", show["last_job"])
	}
}
