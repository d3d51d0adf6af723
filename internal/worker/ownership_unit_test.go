package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/sharding"
)

// memClaims keeps partition holders in memory; a release of a partition
// in failOnce fails the first time, as a dropped connection does.
type memClaims struct {
	memLayout
	mu       sync.Mutex
	holder   map[int]string
	failOnce map[int]bool
	released []int
}

func (m *memClaims) Claim(_ context.Context, p int, token, expected string) (lease.Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holder[p] != expected {
		return lease.Grant{}, lease.ErrHeld
	}
	m.holder[p] = token
	return lease.Grant{Epoch: 1}, nil
}

func (m *memClaims) Release(_ context.Context, p int, token string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failOnce[p] {
		delete(m.failOnce, p)
		return false, errors.New("connection reset")
	}
	if m.holder[p] != token {
		return false, nil
	}
	delete(m.holder, p)
	m.released = append(m.released, p)
	return true, nil
}

func (m *memClaims) Holders(_ context.Context, parts []int) (map[int]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int]string, len(parts))
	for _, p := range parts {
		out[p] = m.holder[p]
	}
	return out, nil
}

func (m *memClaims) Events(context.Context) <-chan string { return nil }

// heldLease is a lease that stays valid.
type heldLease struct{ token string }

func (l heldLease) Token() string         { return l.token }
func (l heldLease) Valid() bool           { return true }
func (l heldLease) Lost() <-chan struct{} { return nil }
func (l heldLease) Stop()                 {}

// TestReleaseFailureIsRetried: the ring gives this worker's partitions to
// another member; one release fails. The partition stops being processed
// at once, stays pending, and the next reconcile releases it.
func TestReleaseFailureIsRetried(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.ID = "me"
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	claims := &memClaims{holder: map[int]string{1: "me~1", 2: "me~1"}, failOnce: map[int]bool{2: true}}
	g := newGrants()
	g.add(1, lease.Grant{Epoch: 1})
	g.add(2, lease.Grant{Epoch: 1})
	view := newMembership(cfg, log)
	ring, err := sharding.NewRing(cfg.Ring, []string{"other"})
	if err != nil {
		t.Fatal(err)
	}
	view.ring.Store(ring)
	o := newOwnership(cfg, log, claims, heldLease{"me~1"}, g, view)

	ctx := context.Background()
	if err := o.reconcile(ctx); err == nil {
		t.Fatal("a failed release was not reported")
	}
	if n := g.count(); n != 0 {
		t.Fatalf("%d partitions still processed after giving them up", n)
	}
	if got := g.pending(); !slices.Equal(got, []int{2}) {
		t.Fatalf("pending releases %v, want [2]", got)
	}
	if err := o.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := g.pending(); len(got) != 0 {
		t.Fatalf("pending releases %v after the retry", got)
	}
	slices.Sort(claims.released)
	if !slices.Equal(claims.released, []int{1, 2}) || len(claims.holder) != 0 {
		t.Fatalf("released %v, holders left %v", claims.released, claims.holder)
	}
}

// TestLostClaimIsClaimedAgain: Redis forgets that this worker holds a
// partition (restored from a snapshot taken before the claim, say) while
// the worker goes on processing it under its grant. With no job to commit,
// no fenced commit tells it; the sweep must, or the partition stays free
// with nobody processing it. The next reconciles drop the lost grant and
// claim the partition again.
func TestLostClaimIsClaimedAgain(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.ID = "me"
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	view := newMembership(cfg, log)
	ring, err := sharding.NewRing(cfg.Ring, []string{"me"})
	if err != nil {
		t.Fatal(err)
	}
	view.ring.Store(ring)
	claims := &memClaims{holder: map[int]string{}}
	g := newGrants()
	for p := range cfg.Ring.Partitions {
		claims.holder[p] = "me~1"
		g.add(p, lease.Grant{Epoch: 1, Nonce: "n7"})
	}
	o := newOwnership(cfg, log, claims, heldLease{"me~1"}, g, view)

	claims.mu.Lock()
	delete(claims.holder, 5)            // forgotten: free
	claims.holder[9] = "someone-else~2" // taken over while we still run it
	claims.mu.Unlock()

	ctx := context.Background()
	for range 3 {
		if err := o.reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		o.loop.lastSweep = time.Time{} // sweep every round
	}
	if gr, ok := g.grantOf(5); !ok || gr == (lease.Grant{Epoch: 1, Nonce: "n7"}) {
		t.Errorf("partition 5, free in Redis, is processed under %v (held %v): want a new claim", gr, ok)
	}
	claims.mu.Lock()
	defer claims.mu.Unlock()
	if claims.holder[5] != "me~1" {
		t.Errorf("partition 5 is held by %q in Redis, want me~1", claims.holder[5])
	}
	if gr, ok := g.grantOf(9); ok && gr == (lease.Grant{Epoch: 1, Nonce: "n7"}) {
		t.Errorf("partition 9, taken over by another worker, is still processed under the old grant")
	}
}
