package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

func TestPrintDeadLettersHasHeader(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	var b bytes.Buffer
	printDeadLetters(&b, []*workerpb.DeadLetter{
		{Id: "j1", Handler: "donor.donate", Key: "alice", Attempts: 1, DeadAtMs: at, Errors: []string{"attempt 1: bad\ninput"}},
		{Id: "j2", Handler: "donor.donate", Key: "bob", Attempts: 5, DeadAtMs: at + 1000, Errors: []string{"a", "attempt 5: boom"}},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "DEAD AT") || !strings.Contains(lines[0], "ATTEMPTS") {
		t.Fatalf("want a header and two rows:\n%s", b.String())
	}
	if !strings.HasPrefix(lines[1], "2026-01-02T03:04:05Z  j1") || !strings.HasSuffix(lines[1], "attempt 1: bad input") ||
		!strings.HasSuffix(lines[2], "attempt 5: boom") {
		t.Fatalf("rows:\n%s", b.String())
	}
}
