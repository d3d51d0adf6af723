package discovery

import (
	"context"
	"errors"
	"testing"
	"time"
)

// next receives one snapshot or fails after a generous deadline.
func next(t *testing.T, ch <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot within 10s")
	}
	panic("unreachable")
}

func ids(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func sameIDs(ms []Member, want ...string) bool { return equalIDs(ids(ms), want...) }

func equalIDs(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestStaticHealthySorted(t *testing.T) {
	t.Parallel()
	s := NewStatic(Member{ID: "c"}, Member{ID: "a"}, Member{ID: "b"})
	ms, err := s.Healthy(context.Background())
	if err != nil || !sameIDs(ms, "a", "b", "c") {
		t.Fatalf("Healthy = %v, %v; want a b c", ids(ms), err)
	}
	ms[0].ID = "mutated"
	if again, _ := s.Healthy(context.Background()); !sameIDs(again, "a", "b", "c") {
		t.Fatal("a caller changed Static's members through Healthy's result")
	}
}

func TestStaticWatchEmitsOnlyChanges(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewStatic(Member{ID: "a", Address: "h:1"})
	ch := s.Watch(ctx)
	if first := next(t, ch); !sameIDs(first.Members, "a") {
		t.Fatalf("first snapshot %v, want [a]", ids(first.Members))
	}

	s.Set(Member{ID: "a", Address: "h:1"}) // no change: nothing to emit
	s.Set(Member{ID: "a", Address: "h:1"}, Member{ID: "b", Address: "h:2"})
	if got := next(t, ch); !sameIDs(got.Members, "a", "b") {
		t.Fatalf("after adding b: %v, want [a b]", ids(got.Members))
	}

	s.Set(Member{ID: "a", Address: "h:9"}, Member{ID: "b", Address: "h:2"}) // a moved
	if got := next(t, ch); got.Members[0].Address != "h:9" {
		t.Fatalf("after a moved: %v", got.Members)
	}
}

func TestStaticSlowReceiverGetsLatest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewStatic()
	ch := s.Watch(ctx)
	if first := next(t, ch); len(first.Members) != 0 {
		t.Fatalf("first snapshot %v, want empty", first.Members)
	}
	s.Set(Member{ID: "a"})
	s.Set(Member{ID: "a"}, Member{ID: "b"})
	s.Set(Member{ID: "c"})
	// Intermediate states may or may not be seen; the last one must be.
	for {
		got := next(t, ch)
		if sameIDs(got.Members, "c") {
			return
		}
	}
}

func TestStaticWatchClosesWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	s := NewStatic(Member{ID: "a"})
	ch := s.Watch(ctx)
	next(t, ch)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("snapshot after cancel without a change")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed 10s after cancel")
	}
}

func TestStaticAsRegistry(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewStatic(Member{ID: "peer", Address: "10.0.0.2:7000"})
	if err := s.SetHealth(ctx, StatusPassing, "ok"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("SetHealth before Register: %v, want ErrNotRegistered", err)
	}
	ch := s.Watch(ctx)
	next(t, ch)

	if err := s.Register(ctx, Registration{ID: "me", Address: "10.0.0.1", Port: 7000}); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.Healthy(ctx); !sameIDs(ms, "peer") {
		t.Fatalf("registered but not yet passing: members %v, want [peer]", ids(ms))
	}
	if err := s.SetHealth(ctx, StatusPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	got := next(t, ch)
	if !sameIDs(got.Members, "me", "peer") || got.Members[0].Address != "10.0.0.1:7000" {
		t.Fatalf("after passing: %v", got.Members)
	}
	// Registering again, with new meta, keeps the status, as in Consul.
	if err := s.Register(ctx, Registration{ID: "me", Address: "10.0.0.1", Port: 7000, Meta: map[string]string{"v": "2"}}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, ch); !sameIDs(got.Members, "me", "peer") || got.Members[0].Meta["v"] != "2" {
		t.Fatalf("after registering again: %v", got.Members)
	}
	if err := s.SetHealth(ctx, StatusWarning, "slow"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, ch); !sameIDs(got.Members, "peer") {
		t.Fatalf("after warning: %v, want [peer] (passing only)", ids(got.Members))
	}
	if err := s.SetHealth(ctx, Status("fine"), ""); err == nil {
		t.Fatal("unknown status accepted")
	}
	if err := s.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Deregister(ctx); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
	if err := s.SetHealth(ctx, StatusPassing, "ok"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("SetHealth after Deregister: %v, want ErrNotRegistered", err)
	}
}
