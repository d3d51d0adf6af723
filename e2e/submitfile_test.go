package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
)

// TestSubmitFileOrderAndReports: `coordinator submit --file` of 20,000
// lines over 40 accounts, spread over two workers in large pipelined
// calls, commits every account's jobs in file order; a duplicate line, a
// reused id with other content and a malformed line are each reported with
// their line number, and the rest is submitted; lines without an id are
// submitted too.
func TestSubmitFileOrderAndReports(t *testing.T) {
	c := newCluster(t, "--partitions", "16")
	plugin := chaosPlugin(t, c)
	c.startWith("w1", plugin)
	c.startWith("w2", plugin)

	const accounts, perAccount = 40, 500
	var b strings.Builder
	line := 0
	write := func(s string) int {
		b.WriteString(s)
		b.WriteByte('\n')
		line++
		return line
	}
	var dupLine, conflictLine, badLine int
	for seq := 1; seq <= perAccount; seq++ {
		for a := range accounts {
			write(fmt.Sprintf(`{"id":"f-%d-%d","handler":"account.add","key":"acct-%d","payload":{"amount_cents":%d,"seq":%d,"bucket":"b"}}`, a, seq, a, seq, seq))
		}
		switch seq {
		case 100:
			dupLine = write(`{"id":"f-3-7","handler":"account.add","key":"acct-3","payload":{"amount_cents":7,"seq":7,"bucket":"b"}}`)
		case 200:
			conflictLine = write(`{"id":"f-4-9","handler":"account.add","key":"acct-4","payload":{"amount_cents":1,"seq":9,"bucket":"b"}}`)
		case 300:
			badLine = write(`{"id":"f-x","handler":"account.add","key":`)
		}
	}
	// Lines without an id get one from the coordinator.
	const noID = 10
	for seq := 1; seq <= noID; seq++ {
		write(fmt.Sprintf(`{"handler":"account.add","key":"acct-noid","payload":{"amount_cents":%d,"seq":%d,"bucket":"b"}}`, seq, seq))
	}
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.coordinator("submit", "--quiet", "--file", file)
	t.Logf("submit: %s", strings.TrimSpace(out))
	if err == nil {
		t.Fatal("submit --file with a conflicting and a malformed line succeeded")
	}
	msg := err.Error()
	for _, want := range []string{
		fmt.Sprintf("line %d: rejected: ", conflictLine),
		"already used with different content",
		fmt.Sprintf("line %d: malformed JSON", badLine),
		fmt.Sprintf("2 of %d lines rejected", line),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("submit error does not say %q: %.600s", want, msg)
		}
	}
	if want := fmt.Sprintf("submitted %d, duplicates 1, rejected 2,", accounts*perAccount+noID); !strings.Contains(out, want) {
		t.Errorf("summary %q, want %q (duplicate on line %d)", out, want, dupLine)
	}

	cl := c.client()
	keys := make([]string, accounts, accounts+1)
	for a := range keys {
		keys[a] = fmt.Sprintf("acct-%d", a)
	}
	keys = append(keys, "acct-noid")
	testenv.Eventually(t, 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sts, err := cl.State(ctx, "account", keys...)
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for i, st := range sts {
			var acc chaosAccount
			if st.Found {
				if err := json.Unmarshal(st.State, &acc); err != nil {
					t.Fatal(err)
				}
			}
			if acc.OutOfOrder != 0 {
				t.Fatalf("%s: %d jobs committed out of file order", keys[i], acc.OutOfOrder)
			}
			n := int64(perAccount)
			if keys[i] == "acct-noid" {
				n = noID
			}
			if acc.Count == n {
				if acc.TotalCents != n*(n+1)/2 || acc.LastSeq != n {
					t.Fatalf("%s: %+v, want total %d and last seq %d", keys[i], acc, n*(n+1)/2, n)
				}
				done++
			}
		}
		if done != len(keys) {
			return fmt.Errorf("%d of %d accounts complete", done, len(keys))
		}
		return nil
	})
}
