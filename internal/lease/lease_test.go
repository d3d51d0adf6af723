package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/testenv"
)

// fastLease expires within a second, so tests see renewal and expiry fast.
var fastLease = lease.Config{TTL: 600 * time.Millisecond, RenewEvery: 100 * time.Millisecond, Margin: 100 * time.Millisecond}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := lease.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	bad := lease.Config{TTL: time.Second, RenewEvery: 500 * time.Millisecond, Margin: 100 * time.Millisecond}
	if err := bad.Validate(); err == nil {
		t.Fatal("TTL below two renewals plus margin accepted")
	}
}

func TestClaimReleaseEpochs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()

	e1, err := lease.Claim(ctx, rdb, 7, "a~1", "")
	if err != nil || e1.Epoch != 1 || e1.Nonce == "" {
		t.Fatalf("first claim: grant %v err %v, want epoch 1 with a nonce", e1, err)
	}
	// b expects the partition to be free, but a holds it.
	if _, err := lease.Claim(ctx, rdb, 7, "b~1", ""); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("claim of a held partition: %v, want ErrHeld", err)
	}
	// Taking over from a named holder (whose lease is gone) bumps the epoch.
	e2, err := lease.Claim(ctx, rdb, 7, "b~1", "a~1")
	if err != nil || e2.Epoch != 2 || e2.Nonce == e1.Nonce {
		t.Fatalf("takeover: grant %v err %v, want epoch 2 and a new nonce", e2, err)
	}
	// a no longer holds it, so its release changes nothing.
	if ok, err := lease.Release(ctx, rdb, 7, "a~1"); err != nil || ok {
		t.Fatalf("stale release: %v %v", ok, err)
	}
	if ok, err := lease.Release(ctx, rdb, 7, "b~1"); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	h, err := lease.HolderOf(ctx, rdb, 7)
	if err != nil || h.Token != "" || h.Grant != e2 {
		t.Fatalf("after release: %+v %v; want free at epoch 2", h, err)
	}
	// Epochs never go back: the next grant is 3.
	if e3, err := lease.Claim(ctx, rdb, 7, "c~1", ""); err != nil || e3.Epoch != 3 {
		t.Fatalf("claim after release: %v %v", e3, err)
	}
}

func TestKeeperRenewsAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	cfg := fastLease
	k, err := lease.NewKeeper(rdb, cfg, "w1~x", "w1", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Valid() {
		t.Fatal("valid before Start")
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Outlive the TTL several times, on the clock Redis expires keys by:
	// renewal keeps it alive.
	time.Sleep(3 * cfg.TTL)
	if alive, err := lease.Alive(ctx, rdb, "w1~x"); err != nil || !alive || !k.Valid() {
		t.Fatalf("lease after renewals: alive %v valid %v err %v", alive, k.Valid(), err)
	}
	// A second keeper with the same token is refused.
	k2, _ := lease.NewKeeper(rdb, cfg, "w1~x", "w1", time.Now, nil)
	if err := k2.Start(ctx); err == nil {
		t.Fatal("second keeper with the same token started")
	}
	k.Stop()
	k.Stop() // twice is fine
	if alive, _ := lease.Alive(ctx, rdb, "w1~x"); alive || k.Valid() {
		t.Fatal("lease survives Stop")
	}
}

// A keeper whose process says it cannot work stops renewing: the lease
// lapses and the worker stops trusting its ownership.
func TestKeeperStopsRenewingWhenUnhealthy(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	cfg := fastLease
	k, err := lease.NewKeeper(rdb, cfg, "w1~x", "w1", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stuck atomic.Bool
	var asked atomic.Int64
	k.RenewOnlyWhile(func() bool { asked.Add(1); return !stuck.Load() })
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	// Renewal ticks for two TTLs: a healthy keeper keeps its lease.
	ticks := int64(2 * cfg.TTL / cfg.RenewEvery)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := asked.Load(); n < ticks {
			return fmt.Errorf("the keeper asked whether to renew %d times, want %d", n, ticks)
		}
		return nil
	})
	if alive, err := lease.Alive(ctx, rdb, "w1~x"); err != nil || !alive || !k.Valid() {
		t.Fatalf("healthy keeper after %d renewals: lease alive %v, valid %v, err %v", ticks, alive, k.Valid(), err)
	}
	stuck.Store(true)
	testenv.Eventually(t, 10*time.Second, func() error {
		if alive, err := lease.Alive(ctx, rdb, "w1~x"); err != nil || alive || k.Valid() {
			return fmt.Errorf("stuck keeper: lease alive %v, valid %v, err %v; want it lapsed", alive, k.Valid(), err)
		}
		return nil
	})
}

// fakeClock is a clock only the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestKeeperTrustEndsOnItsClockBeforeTheLeaseExpires: the keeper trusts
// its lease for the TTL less the margin, from when it asked Redis, on the
// clock it was given; the lease itself is still in Redis then.
func TestKeeperTrustEndsOnItsClockBeforeTheLeaseExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	cfg := lease.Config{TTL: time.Minute, RenewEvery: 10 * time.Second, Margin: 5 * time.Second}
	clock := &fakeClock{now: time.Now()}
	k, err := lease.NewKeeper(rdb, cfg, "w3~x", "w3", clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	if got, want := k.Remaining(), cfg.TTL-cfg.Margin; got != want {
		t.Fatalf("Remaining at start = %v, want TTL - margin = %v", got, want)
	}
	clock.Advance(cfg.TTL - cfg.Margin - time.Millisecond)
	if !k.Valid() {
		t.Fatalf("not valid a millisecond before TTL - margin (remaining %v)", k.Remaining())
	}
	clock.Advance(time.Millisecond)
	if k.Valid() {
		t.Fatalf("still valid at TTL - margin (remaining %v)", k.Remaining())
	}
	if alive, err := lease.Alive(ctx, rdb, "w3~x"); err != nil || !alive {
		t.Fatalf("the lease in Redis: alive %v, err %v; want it there while trust has ended", alive, err)
	}
}

func TestKeeperNoticesExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	cfg := fastLease
	k, err := lease.NewKeeper(rdb, cfg, "w2~x", "w2", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	lost := k.Lost()
	// As if the worker stalled past its TTL: the lease vanishes from Redis.
	rdb.Del(ctx, keys.Lease("w2~x"))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("keeper did not notice its lease was gone")
	}
}

func TestReleaseAndStopAreAnnounced(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := lease.Events(ctx, rdb)
	testenv.Eventually(t, 10*time.Second, func() error {
		subs, err := rdb.PubSubNumSub(ctx, lease.EventsChannel).Result()
		if subs[lease.EventsChannel] != 1 {
			return fmt.Errorf("subscribers of %s: %v, %v; want the one of Events", lease.EventsChannel, subs, err)
		}
		return nil
	})
	next := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event, want %q", want)
		}
	}
	if _, err := lease.Claim(ctx, rdb, 3, "a~1", ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := lease.Release(ctx, rdb, 3, "a~1"); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	next("released 3")

	cfg := fastLease
	k, err := lease.NewKeeper(rdb, cfg, "w9~x", "w9", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	alive, err := lease.AliveTokens(ctx, rdb, []string{"w9~x", "gone~y"})
	if err != nil || !alive["w9~x"] || alive["gone~y"] {
		t.Fatalf("alive tokens %v err %v", alive, err)
	}
	k.Stop()
	next("left w9~x")
	if alive, _ := lease.AliveTokens(ctx, rdb, []string{"w9~x"}); alive["w9~x"] {
		t.Fatal("lease alive after Stop")
	}
	if id := lease.WorkerID("w9~x"); id != "w9" {
		t.Fatalf("WorkerID = %q", id)
	}
}

// TestHoldersOf: one read names each partition's holder and last grant: a
// held one, a released one (free, its grant kept) and one never granted.
func TestHoldersOf(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	g1, err := lease.Claim(ctx, rdb, 1, "a~1", "")
	if err != nil {
		t.Fatal(err)
	}
	g2, err := lease.Claim(ctx, rdb, 2, "b~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Release(ctx, rdb, 2, "b~1"); err != nil {
		t.Fatal(err)
	}
	hs, err := lease.HoldersOf(ctx, rdb, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]lease.Holder{1: {Token: "a~1", Grant: g1}, 2: {Grant: g2}, 3: {}}
	for p, w := range want {
		if hs[p] != w {
			t.Errorf("partition %d: %+v, want %+v", p, hs[p], w)
		}
		if h, err := lease.HolderOf(ctx, rdb, p); err != nil || h != w {
			t.Errorf("HolderOf(%d) = %+v, %v; want %+v", p, h, err, w)
		}
	}
	if len(hs) != len(want) {
		t.Errorf("%d holders, want %d", len(hs), len(want))
	}
}

// TestTokenNamesItsWorker: a token names the worker it was made for, even
// when the worker id has dashes or dots, and two tokens of one worker
// differ.
func TestTokenNamesItsWorker(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"worker-1", "w.eu-2", "w"} {
		a, b := lease.NewToken(id), lease.NewToken(id)
		if a == b {
			t.Errorf("two tokens of %s are equal: %s", id, a)
		}
		if got := lease.WorkerID(a); got != id {
			t.Errorf("WorkerID(%q) = %q, want %q", a, got, id)
		}
	}
	if got := lease.WorkerID(""); got != "" {
		t.Errorf(`WorkerID("") = %q`, got)
	}
}
