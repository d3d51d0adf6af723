package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestProxyCutHoldsLateWrites: during a cut nothing gets through, and a
// write whose client gave up arrives once the proxy heals.
func TestProxyCutHoldsLateWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	r := testenv.StartRedis(t)
	direct := r.Client(t)
	px := testenv.StartProxy(t, r.Addr)
	viaProxy := redis.NewClient(&redis.Options{Addr: px.Addr, MaxRetries: -1})
	defer viaProxy.Close()
	ctx := context.Background()
	if err := viaProxy.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	px.Cut()
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := viaProxy.Set(cctx, "k", "late", 0).Err()
	cancel()
	if err == nil {
		t.Fatal("a write got through a cut proxy")
	}
	if v, _ := direct.Get(ctx, "k").Result(); v != "before" {
		t.Fatalf("during the cut k = %q, want before", v)
	}

	px.Heal()
	testenv.Eventually(t, 5*time.Second, func() error {
		if v, err := direct.Get(ctx, "k").Result(); v != "late" {
			return fmt.Errorf("the held write has not arrived after Heal: k = %q, %v", v, err)
		}
		return nil
	})
	if err := viaProxy.Ping(ctx).Err(); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}

// TestProxyCutAtMarker: the proxy cuts the moment a marked command goes
// through, holding that very command until Heal.
func TestProxyCutAtMarker(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	r := testenv.StartRedis(t)
	direct := r.Client(t)
	px := testenv.StartProxy(t, r.Addr)
	viaProxy := redis.NewClient(&redis.Options{Addr: px.Addr, MaxRetries: -1})
	defer viaProxy.Close()
	ctx := context.Background()
	fired := px.CutAt("marked-key")
	if err := viaProxy.Set(ctx, "plain", "1", 0).Err(); err != nil {
		t.Fatalf("unmarked command: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := viaProxy.Set(cctx, "marked-key", "1", 0).Err()
	cancel()
	select {
	case <-fired:
	default:
		t.Fatal("the marked command did not cut the proxy")
	}
	if err == nil {
		t.Fatal("the marked command was answered")
	}
	if n, _ := direct.Exists(ctx, "marked-key").Result(); n != 0 {
		t.Fatal("the marked command reached Redis during the cut")
	}
	px.Heal()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n, err := direct.Exists(ctx, "marked-key").Result(); n == 0 {
			return fmt.Errorf("the held command has not arrived after Heal (%v)", err)
		}
		return nil
	})
}

// TestProxyDelayHoldsReplies: with a delay set, a reply comes no sooner
// than the delay, and once it is lifted replies come at once again.
func TestProxyDelayHoldsReplies(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	r := testenv.StartRedis(t)
	px := testenv.StartProxy(t, r.Addr)
	viaProxy := redis.NewClient(&redis.Options{Addr: px.Addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer viaProxy.Close()
	ctx := context.Background()
	if err := viaProxy.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	px.Delay(400 * time.Millisecond)
	start := time.Now()
	if err := viaProxy.Get(ctx, "k").Err(); err != nil {
		t.Fatalf("delayed get: %v", err)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("a delayed reply came after %v, before the 400ms delay", took)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := viaProxy.Get(cctx, "k").Err()
	cancel()
	if err == nil {
		t.Fatal("a get with a 100ms deadline got its reply through a 400ms delay")
	}
	px.Delay(0)
	fresh := redis.NewClient(&redis.Options{Addr: px.Addr, MaxRetries: -1})
	defer fresh.Close()
	if v, err := fresh.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after the delay: %q, %v", v, err)
	}
}

// TestProxyRetarget: after Retarget, clients reconnect to the new server.
func TestProxyRetarget(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	ctx := context.Background()
	a.Client(t).Set(ctx, "who", "a", 0)
	b.Client(t).Set(ctx, "who", "b", 0)
	px := testenv.StartProxy(t, a.Addr)
	c := redis.NewClient(&redis.Options{Addr: px.Addr})
	defer c.Close()
	if v, _ := c.Get(ctx, "who").Result(); v != "a" {
		t.Fatalf("before Retarget: %q", v)
	}
	px.Retarget(b.Addr)
	testenv.Eventually(t, 5*time.Second, func() error {
		if v, err := c.Get(ctx, "who").Result(); v != "b" {
			return fmt.Errorf("after Retarget: who = %q, %v; want b", v, err)
		}
		return nil
	})
}
