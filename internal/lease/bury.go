package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// BuriedFor is how long a burial is remembered. A token is buried at most
// once in that time: if its worker comes back (the evidence was false),
// its lease is never ended early again, so a lying sign of death moves its
// partitions away once (and it takes a share again when it rejoins), not
// over and over.
const BuriedFor = time.Hour

// buriedKey marks a token whose lease was ended early. It sits beside the
// lease key (the same ACL pattern), not in its slot, so Bury takes two steps.
func buriedKey(token string) string { return keys.Lease(token) + ":buried" }

// Bury ends the lease of token before its TTL, on evidence from the caller
// that its worker is dead (its port refuses connections), and announces
// the departure on EventsChannel so every worker drops it from its ring
// and its partitions are claimed at once, each under a new epoch. It
// reports whether it ended a lease: not when the lease is gone already, nor
// when the token was buried before (see BuriedFor).
//
// A false burial of a live worker is safe, not free: its commits are fenced
// once its partitions are claimed, and it takes a lease again on its next
// renewal (Keeper), so its partitions move away once and it takes a share
// again.
func Bury(ctx context.Context, rdb redis.UniversalClient, token string) (bool, error) {
	n, err := rdb.Exists(ctx, keys.Lease(token)).Result()
	if err != nil {
		return false, fmt.Errorf("lease: bury %s: %w", token, err)
	}
	if n == 0 {
		return false, nil
	}
	first, err := rdb.SetNX(ctx, buriedKey(token), "1", BuriedFor).Result()
	if err != nil {
		return false, fmt.Errorf("lease: bury %s: %w", token, err)
	}
	if !first {
		return false, nil
	}
	pipe := rdb.Pipeline()
	del := pipe.Del(ctx, keys.Lease(token))
	pipe.Publish(ctx, EventsChannel, "left "+token)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("lease: bury %s: %w", token, err)
	}
	return del.Val() == 1, nil
}

// Buried reports whether token's lease was ended early by Bury within
// BuriedFor.
func Buried(ctx context.Context, rdb redis.UniversalClient, token string) (bool, error) {
	n, err := rdb.Exists(ctx, buriedKey(token)).Result()
	return n == 1, err
}
