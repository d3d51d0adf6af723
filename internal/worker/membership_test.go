package worker

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/discovery"
)

func TestMemberChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		before, after, joined, left []string
	}{
		{nil, []string{"a", "b"}, []string{"a", "b"}, nil},
		{[]string{"a", "b"}, []string{"a", "b"}, nil, nil},
		{[]string{"a", "b"}, []string{"a", "c"}, []string{"c"}, []string{"b"}},
		{[]string{"a", "b", "c"}, nil, nil, []string{"a", "b", "c"}},
	} {
		j, l := memberChanges(tc.before, tc.after)
		if !slices.Equal(j, tc.joined) || !slices.Equal(l, tc.left) {
			t.Errorf("memberChanges(%v, %v) = %v, %v; want %v, %v", tc.before, tc.after, j, l, tc.joined, tc.left)
		}
	}
}

// TestMembershipCountsRealChanges: snapshots naming the same live members
// rebuild nothing and count nothing; the log names who joined and left.
func TestMembershipCountsRealChanges(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.ID = "w1"
	m := newMembership(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	changes := 0
	m.changed = func() { changes++ }
	allAlive := func(_ context.Context, toks []string) (map[string]bool, error) {
		live := map[string]bool{}
		for _, t := range toks {
			live[t] = true
		}
		return live, nil
	}
	see := func(ids ...string) {
		var ms []discovery.Member
		for _, id := range ids {
			ms = append(ms, discovery.Member{ID: id, Address: id + ":7070", Meta: map[string]string{metaLease: id + "~1"}})
		}
		m.observe(discovery.Snapshot{Members: ms})
		m.refresh(context.Background(), allAlive)
	}
	see("w1", "w2")
	see("w1", "w2") // a new Consul index, the same members
	see("w1", "w2")
	if changes != 1 {
		t.Fatalf("%d changes counted after one real change", changes)
	}
	see("w1", "w3")
	if changes != 2 {
		t.Fatalf("%d changes counted after two real changes", changes)
	}
	out := logs.String()
	t.Log(out)
	if !strings.Contains(out, "joined=w3 left=w2") {
		t.Errorf("the log does not name who joined and left:\n%s", out)
	}
	if strings.Count(out, "membership changed") != 2 {
		t.Errorf("want two membership change lines:\n%s", out)
	}
}
