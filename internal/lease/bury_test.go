package lease_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/testenv"
)

// TestBuryEndsALeaseOnce: a burial ends a live lease and announces it; a
// worker that was only thought dead takes its lease again, and is never
// buried a second time, so false evidence cannot make its partitions flap.
func TestBuryEndsALeaseOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	if ok, err := lease.Bury(ctx, rdb, "none~1"); err != nil || ok {
		t.Fatalf("bury of a lease that does not exist: %v %v, want false", ok, err)
	}
	k, err := lease.NewKeeper(rdb, fastLease, "w4~x", "w4", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	lost := k.Lost()
	ok, err := lease.Bury(ctx, rdb, "w4~x")
	if err != nil || !ok {
		t.Fatalf("bury: %v %v, want true", ok, err)
	}
	if buried, err := lease.Buried(ctx, rdb, "w4~x"); err != nil || !buried {
		t.Fatalf("buried: %v %v", buried, err)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("keeper did not notice its lease was ended")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if alive, err := lease.Alive(ctx, rdb, "w4~x"); err != nil || !alive {
			return fmt.Errorf("lease not taken again: %v %v", alive, err)
		}
		return nil
	})
	if ok, err := lease.Bury(ctx, rdb, "w4~x"); err != nil || ok {
		t.Fatalf("second bury: %v %v, want false (buried once already)", ok, err)
	}
	if alive, err := lease.Alive(ctx, rdb, "w4~x"); err != nil || !alive {
		t.Fatalf("lease ended by a second bury: %v %v", alive, err)
	}
	if ttl := rdb.PTTL(ctx, "corral:lease:w4~x:buried").Val(); ttl <= 0 || ttl > lease.BuriedFor {
		t.Fatalf("burial mark TTL %v, want within %v", ttl, lease.BuriedFor)
	}
}
