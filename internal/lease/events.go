package lease

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// EventsChannel is the Redis pub/sub channel on which releases ("released
// P") and departures ("left TOKEN") are announced. Messages only wake
// claimers early; a worker that misses one still claims on its next tick.
const EventsChannel = "corral:ownership"

// Events delivers a value for every ownership announcement until ctx ends.
// The subscription reconnects by itself after a Redis outage.
func Events(ctx context.Context, rdb redis.UniversalClient) <-chan string {
	out := make(chan string, 64)
	sub := rdb.Subscribe(ctx, EventsChannel)
	go func() {
		defer close(out)
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- m.Payload:
				default: // a wake-up is pending already
				}
			}
		}
	}()
	return out
}

// AliveTokens reports which of tokens have a live lease, in one round trip.
func AliveTokens(ctx context.Context, rdb redis.UniversalClient, tokens []string) (map[string]bool, error) {
	pipe := rdb.Pipeline()
	cmds := make(map[string]*redis.IntCmd, len(tokens))
	for _, t := range tokens {
		if _, ok := cmds[t]; !ok {
			cmds[t] = pipe.Exists(ctx, keys.Lease(t))
		}
	}
	if len(cmds) == 0 {
		return map[string]bool{}, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("lease: read member leases: %w", err)
	}
	out := make(map[string]bool, len(cmds))
	for t, c := range cmds {
		out[t] = c.Val() == 1
	}
	return out, nil
}
