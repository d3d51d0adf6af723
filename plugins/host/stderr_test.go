package host

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func TestStderrTail(t *testing.T) {
	t.Parallel()
	tail := &stderrTail{}
	w := tail.writer()
	// A line far over the limit, in pieces, is cut to its first 2 KiB.
	for range 5 {
		_, _ = w.Write([]byte(strings.Repeat("x", 1000)))
	}
	_, _ = w.Write([]byte("\n"))
	lines, total := tail.last()
	if total != 1 || len(lines) != 1 || lines[0] != strings.Repeat("x", tailBytes) {
		t.Fatalf("a 5000-byte line kept as %d lines (%d seen), first %d bytes", len(lines), total, len(lines[0]))
	}
	// The last 10 lines, and no more than 2 KiB of them.
	for i := range 12 {
		fmt.Fprintf(w, "line %d\r\n", i)
	}
	lines, total = tail.last()
	if total != 13 || len(lines) != 10 || lines[0] != "line 2" || lines[9] != "line 11" {
		t.Fatalf("after 13 lines: %q (%d seen)", lines, total)
	}
	for range 10 {
		fmt.Fprintln(w, strings.Repeat("y", 499))
	}
	if lines, _ = tail.last(); len(lines) != 4 {
		t.Fatalf("kept %d lines of 500 bytes, want the 4 that fit in 2 KiB", len(lines))
	}
	// Two streams keep their partial lines apart.
	a, b := tail.writer(), tail.writer()
	_, _ = a.Write([]byte("from a, "))
	_, _ = b.Write([]byte("from b\n"))
	_, _ = a.Write([]byte("still a\n"))
	if lines, _ = tail.last(); lines[len(lines)-2] != "from b" || lines[len(lines)-1] != "from a, still a" {
		t.Fatalf("interleaved streams gave %q", lines[len(lines)-2:])
	}
}

func TestReadableLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`plain text`: `plain text`,
		`{"@level":"error","@message":"no db","@module":"inv","@timestamp":"2026-05-01T10:00:00.000000Z","db":"x","tries":3}`: `ERROR no db db=x tries=3`,
		`{"@message":"no level"}`:    `no level`,
		`{"msg":"not hclog's keys"}`: `{"msg":"not hclog's keys"}`,
		`{broken`:                    `{broken`,
	} {
		if got := readableLine(in); got != want {
			t.Errorf("readableLine(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestShortReason(t *testing.T) {
	t.Parallel()
	le := &LaunchError{Path: "/p", Err: errors.New("Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout\nThis usually means..."),
		Exit: "exit status 3", Stderr: []string{"starting", "config missing: X"}, StderrLines: 2}
	if got, want := shortReason(fmt.Errorf("host: reload: %w", le)), "the plugin exited before the handshake (exit status 3): config missing: X"; got != want {
		t.Errorf("shortReason = %q, want %q", got, want)
	}
	if got := shortReason(errors.New(strings.Repeat("é", 150))); len(got) > 200 || !strings.HasSuffix(got, "é...") {
		t.Errorf("a long reason is cut to %d bytes: %q", len(got), got)
	}
	if got := exitOf(exec.Command("true")); got != "" {
		t.Errorf("exitOf a process not run = %q", got)
	}
}
