package worker

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/routing"
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

// memLayout is the layout store and the leases in memory: a token is
// alive unless dead names it.
type memLayout struct {
	mu     sync.Mutex
	stored lease.Layout
	dead   map[string]bool
	swaps  int
}

func (s *memLayout) AliveTokens(_ context.Context, tokens []string) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, t := range tokens {
		out[t] = !s.dead[t]
	}
	return out, nil
}

func (s *memLayout) LoadLayout(_ context.Context, known lease.Layout) (lease.Layout, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stored.Same(known) {
		return lease.Layout{}, false, nil
	}
	l := s.stored
	l.Members, l.Owners = slices.Clone(l.Members), slices.Clone(l.Owners)
	return l, true, nil
}

func (s *memLayout) SwapLayout(_ context.Context, next lease.Layout) (lease.Layout, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next.Version != s.stored.Version {
		return lease.Layout{}, false, nil
	}
	next.Version++
	s.swaps++
	next.Nonce = strconv.Itoa(s.swaps)
	s.stored = next
	return next, true, nil
}

func (s *memLayout) kill(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		s.dead = map[string]bool{}
	}
	s.dead[token] = true
}

// testMember is one worker's membership over a shared memLayout, with a
// Consul view of its own.
type testMember struct {
	*membership
	token   string
	changes int
	logs    *bytes.Buffer
}

func newTestMember(id string) *testMember {
	cfg := DefaultConfig()
	cfg.ID = id
	tm := &testMember{token: id + "~1", logs: &bytes.Buffer{}}
	tm.membership = newMembership(cfg, slog.New(slog.NewTextHandler(tm.logs, nil)))
	tm.membership.changed = func() { tm.changes++ }
	return tm
}

// sees gives the member a Consul snapshot listing ids (tokens id~1).
func (tm *testMember) sees(ids ...string) {
	var ms []discovery.Member
	for _, id := range ids {
		ms = append(ms, discovery.Member{ID: id, Address: id + ":7070", Meta: map[string]string{metaLease: id + "~1"}})
	}
	tm.observe(discovery.Snapshot{Members: ms})
}

// refreshOn refreshes the member's layout; canOwn false is a worker
// draining (it leaves).
func (tm *testMember) refreshOn(st *memLayout, canOwn bool) {
	tm.refresh(context.Background(), st, selfState{token: tm.token, canOwn: canOwn, leave: !canOwn})
}

func (tm *testMember) owners(t *testing.T) []string {
	t.Helper()
	r := tm.current()
	if r == nil {
		t.Fatalf("%s has no ring", tm.self)
	}
	out := make([]string, r.Partitions())
	for p := range out {
		out[p] = r.OwnerOf(p)
	}
	return out
}

// TestMembershipCountsRealChanges: snapshots naming the same live members
// rebuild nothing and count nothing; the log names who joined and left.
func TestMembershipCountsRealChanges(t *testing.T) {
	t.Parallel()
	st := &memLayout{}
	w1, w2, w3 := newTestMember("w1"), newTestMember("w2"), newTestMember("w3")
	w1.sees("w1", "w2")
	w2.sees("w1", "w2")
	w1.refreshOn(st, true) // the first layout: w1 alone
	w2.refreshOn(st, true) // w2 joins it
	w1.refreshOn(st, true) // w1 reads it
	w1.refreshOn(st, true) // a new round, the same members
	w2.refreshOn(st, true)
	if w1.changes != 2 || w2.changes != 1 || st.swaps != 2 {
		t.Fatalf("%d and %d changes counted, %d layouts stored, after two real changes", w1.changes, w2.changes, st.swaps)
	}
	if !slices.Equal(w1.owners(t), w2.owners(t)) {
		t.Fatal("w1 and w2 place differently")
	}
	st.kill(w2.token)
	w3.sees("w1", "w3")
	w3.refreshOn(st, true) // drops w2, whose lease is gone, and joins
	w1.refreshOn(st, true)
	if w1.changes != 3 {
		t.Fatalf("%d changes counted after three real changes", w1.changes)
	}
	out := w1.logs.String()
	t.Log(out)
	if !strings.Contains(out, "joined=w3 left=w2") {
		t.Errorf("the log does not name who joined and left:\n%s", out)
	}
	if strings.Count(out, "membership changed") != 3 {
		t.Errorf("want three membership change lines:\n%s", out)
	}
}

// TestLayoutIgnoresLaggingViews: a worker whose Consul view lacks a live
// member that joined, or still lists one that left, changes nothing: only
// a member itself joins, and only a gone lease (or the member stepping
// down) takes one out.
func TestLayoutIgnoresLaggingViews(t *testing.T) {
	t.Parallel()
	st := &memLayout{}
	w1, w2, w3 := newTestMember("w1"), newTestMember("w2"), newTestMember("w3")
	for _, w := range []*testMember{w1, w2, w3} {
		w.sees(w.self)
		w.refreshOn(st, true)
	}
	placed := st.stored
	if got := placed.IDs(); !slices.Equal(got, []string{"w1", "w2", "w3"}) {
		t.Fatalf("members %v after three joins", got)
	}
	w1.sees("w1") // w1's view lags: it lists neither w2 nor w3
	w1.refreshOn(st, true)
	if st.stored.Version != placed.Version {
		t.Fatalf("a lagging view changed the layout to %v", st.stored.IDs())
	}
	if !slices.Equal(w1.owners(t), placed.Owners) {
		t.Fatal("w1 does not use the stored layout")
	}

	w3.refreshOn(st, false) // steps down (draining)
	if got := st.stored.IDs(); !slices.Equal(got, []string{"w1", "w2"}) {
		t.Fatalf("members %v after w3 stepped down", got)
	}
	w2.sees("w1", "w2", "w3") // still lists w3, whose lease lives
	w2.refreshOn(st, true)
	if got := st.stored.IDs(); !slices.Equal(got, []string{"w1", "w2"}) {
		t.Fatalf("a view still listing w3 put it back: members %v", got)
	}
	for p, o := range w2.owners(t) {
		if placed.Owners[p] != "w3" && o != placed.Owners[p] {
			t.Errorf("partition %d moved from %s to %s though w3 never held it", p, placed.Owners[p], o)
		}
	}
}

// TestLayoutFollowsReshard: once a worker's routes count more partitions,
// it stores the layout of that many, every old partition with its owner;
// a worker whose routes lag keeps its ring until they catch up.
func TestLayoutFollowsReshard(t *testing.T) {
	t.Parallel()
	st := &memLayout{}
	w1, w2 := newTestMember("w1"), newTestMember("w2")
	w1.routes, w2.routes = routing.New(64), routing.New(64)
	for _, w := range []*testMember{w1, w2} {
		w.sees("w1", "w2")
		w.refreshOn(st, true)
	}
	w1.refreshOn(st, true) // reads w2's join
	before := w1.owners(t)
	w1.routes.Store(routing.View{P: 64, N: 256, Done: make([]bool, 64)})
	w1.refreshOn(st, true)
	after := w1.owners(t)
	if len(after) != 256 || !slices.Equal(after[:64], before) {
		t.Fatalf("after the reshard w1 places %d partitions; the first 64 kept their owners: %v", len(after), slices.Equal(after[:64], before))
	}
	w2.refreshOn(st, true)
	if got := len(w2.owners(t)); got != 64 {
		t.Fatalf("w2, whose routes lag, places %d partitions", got)
	}
	w2.routes.Store(routing.View{P: 64, N: 256, Done: make([]bool, 64)})
	w2.refreshOn(st, true)
	if !slices.Equal(w2.owners(t), after) {
		t.Fatal("w2 places differently from w1 once its routes caught up")
	}
}

// TestLayoutRejoinWaitsForLease: a worker whose lease a peer ended, still
// trusting it on its own clock, does not put itself back until its lease is
// alive again, so it is taken out once and put back once.
func TestLayoutRejoinWaitsForLease(t *testing.T) {
	t.Parallel()
	st := &memLayout{}
	w1, w2 := newTestMember("w1"), newTestMember("w2")
	for _, w := range []*testMember{w1, w2} {
		w.sees("w1", "w2")
		w.refreshOn(st, true)
	}
	st.kill(w1.token) // buried
	w2.refreshOn(st, true)
	if got := st.stored.IDs(); !slices.Equal(got, []string{"w2"}) {
		t.Fatalf("members %v after w1's lease was ended", got)
	}
	swaps := st.swaps
	w1.refreshOn(st, true) // w1 has not noticed yet
	if st.swaps != swaps {
		t.Fatalf("w1 put itself back with a lease that is gone: members %v", st.stored.IDs())
	}
	st.mu.Lock()
	delete(st.dead, w1.token) // its keeper took the lease again
	st.mu.Unlock()
	w1.refreshOn(st, true)
	if got := st.stored.IDs(); !slices.Equal(got, []string{"w1", "w2"}) || st.swaps != swaps+1 {
		t.Fatalf("members %v after %d swaps once w1's lease is back", got, st.swaps-swaps)
	}
}

// TestLayoutRestoredToAnEarlierOne: Redis restored to a snapshot counts
// layout versions on from an older one, so a worker may read the version
// it has installed with other owners; it installs those (else it would
// place by owners nobody else uses, and partitions would wait unclaimed).
func TestLayoutRestoredToAnEarlierOne(t *testing.T) {
	t.Parallel()
	st := &memLayout{}
	w1, w2, w3 := newTestMember("w1"), newTestMember("w2"), newTestMember("w3")
	for _, w := range []*testMember{w1, w2, w3} {
		w.sees("w1", "w2", "w3")
		w.refreshOn(st, true)
	}
	w1.refreshOn(st, true)
	w2.refreshOn(st, true)
	seen := st.stored // what w1 has installed
	if got := w1.owners(t); !slices.Equal(got, seen.Owners) {
		t.Fatal("w1 does not place by the stored layout")
	}
	// The restore: Redis went back to an earlier layout and counted on from
	// it to the version w1 knows, with w3's partitions on w2.
	restored := lease.Layout{Version: seen.Version, Nonce: "restored", Owners: slices.Clone(seen.Owners)}
	for _, m := range seen.Members {
		if m.ID != "w3" {
			restored.Members = append(restored.Members, m)
		}
	}
	for p, o := range restored.Owners {
		if o == "w3" {
			restored.Owners[p] = "w2"
		}
	}
	if slices.Equal(restored.Owners, seen.Owners) {
		t.Fatal("w3 owned nothing")
	}
	st.mu.Lock()
	st.stored = restored
	st.mu.Unlock()
	w1.refreshOn(st, true)
	if got := w1.owners(t); !slices.Equal(got, st.stored.Owners) {
		t.Fatalf("w1 places by the layout of version %d it saw before the restore, not the one stored now", seen.Version)
	}
}
