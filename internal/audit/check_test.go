package audit_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

var t0 = time.UnixMilli(1_700_000_000_000)

func entry(ms int, epoch int64, nonce, id string) store.AuditEntry {
	return store.AuditEntry{At: t0.Add(time.Duration(ms) * time.Millisecond), Grant: lease.Grant{Epoch: epoch, Nonce: nonce}, JobID: id}
}

// TestCheckPassesACleanLog: epochs that only go up, one grant per epoch
// and one commit per id is a clean log; Missing names the ids never
// committed.
func TestCheckPassesACleanLog(t *testing.T) {
	t.Parallel()
	l := &audit.Log{Partitions: map[int][]store.AuditEntry{
		0: {entry(0, 1, "a", "j1"), entry(1, 1, "a", "j2"), entry(5, 2, "b", "j3")},
		1: {entry(2, 4, "c", "j4")},
	}}
	c := l.Check()
	if !c.OK() || !c.Complete() || c.Commits != 4 || c.Duplicated != 0 {
		t.Fatalf("clean log: %+v; want ok, complete, 4 commits", c)
	}
	if m := c.Missing([]string{"j1", "j5", "j4", "j6"}); !reflect.DeepEqual(m, []string{"j5", "j6"}) {
		t.Fatalf("missing: %v, want [j5 j6]", m)
	}
}

// TestCheckFindsEachBreach: an epoch going back (two owners interleaving),
// one epoch under two grants (a grant issued twice) and an id committed
// twice are each reported, and a trimmed log is not complete.
func TestCheckFindsEachBreach(t *testing.T) {
	t.Parallel()
	l := &audit.Log{
		Partitions: map[int][]store.AuditEntry{
			3: {entry(0, 2, "a", "j1"), entry(1, 1, "z", "j2")}, // back from 2 to 1
			4: {entry(0, 5, "a", "j3"), entry(1, 5, "b", "j4")}, // epoch 5 granted twice
			5: {entry(0, 1, "a", "j5"), entry(1, 1, "a", "j5")}, // j5 twice
		},
		Trimmed: map[int]int64{3: 7},
	}
	c := l.Check()
	if c.OK() || c.Complete() || c.Trimmed != 7 {
		t.Fatalf("check: ok %v complete %v trimmed %d; want not ok, not complete, 7", c.OK(), c.Complete(), c.Trimmed)
	}
	if len(c.Regressions) != 1 || !strings.Contains(c.Regressions[0], "partition 3: epoch 1 accepted after 2") {
		t.Errorf("regressions: %q", c.Regressions)
	}
	if len(c.Regrants) != 1 || !strings.Contains(c.Regrants[0], "partition 4: epoch 5 accepted under grants a and b") {
		t.Errorf("regrants: %q", c.Regrants)
	}
	if c.Duplicated != 1 || c.Count["j5"] != 2 {
		t.Errorf("duplicated %d, j5 committed %d times; want 1 and 2", c.Duplicated, c.Count["j5"])
	}
}

// TestFailover: the time from a fault to a moved partition's first commit
// under a newer epoch; commits under the old epoch, or before the fault,
// do not count, and a partition with no newer commit is left out.
func TestFailover(t *testing.T) {
	t.Parallel()
	fault := t0.Add(10 * time.Millisecond)
	l := &audit.Log{Partitions: map[int][]store.AuditEntry{
		0: {entry(5, 2, "x", "a"), entry(12, 1, "a", "b"), entry(40, 2, "x", "c")}, // epoch 2 before the fault does not count
		1: {entry(30, 3, "y", "d")},
		2: {entry(50, 1, "a", "e")}, // still the old epoch
	}}
	got := l.Failover(fault, map[int]int64{0: 1, 1: 2, 2: 1})
	want := []time.Duration{20 * time.Millisecond, 30 * time.Millisecond}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("failover: %v, want %v", got, want)
	}
	if s := audit.Percentiles(got); !strings.Contains(s, "p50 20ms") || !strings.Contains(s, "max 30ms") || !strings.Contains(s, "(2 partitions)") {
		t.Errorf("percentiles: %q", s)
	}
	if s := audit.Percentiles(nil); !strings.HasPrefix(s, "n/a") {
		t.Errorf("percentiles of nothing: %q", s)
	}
}

// TestHoldersHelpers: HeldBy picks a worker's partitions by its token,
// Grants counts the epochs granted between two readings.
func TestHoldersHelpers(t *testing.T) {
	t.Parallel()
	before := map[int]lease.Holder{
		0: {Token: "w-1~aa", Grant: lease.Grant{Epoch: 3}},
		1: {Token: "w-2~bb", Grant: lease.Grant{Epoch: 1}},
		2: {Token: "w-10~cc", Grant: lease.Grant{Epoch: 7}},
		3: {Grant: lease.Grant{Epoch: 2}},
	}
	if got := audit.HeldBy(before, "w-1"); !reflect.DeepEqual(got, map[int]int64{0: 3}) {
		t.Errorf("held by w-1: %v, want partition 0 at epoch 3", got)
	}
	after := map[int]lease.Holder{
		0: {Token: "w-2~bb", Grant: lease.Grant{Epoch: 4}},
		1: {Token: "w-2~bb", Grant: lease.Grant{Epoch: 1}},
		2: {Token: "w-2~bb", Grant: lease.Grant{Epoch: 9}},
		3: {Grant: lease.Grant{Epoch: 2}},
	}
	if n := audit.Grants(before, after); n != 3 {
		t.Errorf("grants: %d, want 3", n)
	}
}
