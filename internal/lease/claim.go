package lease

import (
	"context"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// claimScript grants a partition to a new holder if it is still held by
// the expected one.
//
// KEYS[1] owner key, KEYS[2] epoch key
// ARGV[1] new holder's token, ARGV[2] expected current holder ("" = none)
// Returns the new epoch, or an error "HELD <token>".
var claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then
  return redis.error_reply('HELD ' .. cur)
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
return epoch
`)

// releaseScript frees a partition if the caller still holds it, and tells
// the workers waiting for it, so the next owner claims without polling.
//
// KEYS[1] owner key; ARGV[1] caller's token, ARGV[2] events channel,
// ARGV[3] partition number. Returns 1 if released.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released ' .. ARGV[3])
  return 1
end
return 0
`)

// Holder describes who holds a partition now.
type Holder struct {
	Token string // "" when free
	Epoch int64
}

// WorkerID is the worker id a lease token was made for ("" for "").
func WorkerID(token string) string {
	id, _, _ := strings.Cut(token, "~")
	return id
}

// HolderOf reads the holder and epoch of a partition.
func HolderOf(ctx context.Context, rdb redis.UniversalClient, partition int) (Holder, error) {
	k := keys.For(partition)
	vals, err := rdb.MGet(ctx, k.Owner(), k.Epoch()).Result()
	if err != nil {
		return Holder{}, fmt.Errorf("lease: read holder of partition %d: %w", partition, err)
	}
	var h Holder
	if s, ok := vals[0].(string); ok {
		h.Token = s
	}
	if s, ok := vals[1].(string); ok {
		fmt.Sscan(s, &h.Epoch)
	}
	return h, nil
}

// Claim grants partition to token if its holder is still expected
// ("" for a free partition), and returns the new epoch. It returns ErrHeld
// when someone else got there first.
func Claim(ctx context.Context, rdb redis.UniversalClient, partition int, token, expected string) (int64, error) {
	k := keys.For(partition)
	epoch, err := claimScript.Run(ctx, rdb, []string{k.Owner(), k.Epoch()}, token, expected).Int64()
	if err != nil {
		if strings.HasPrefix(err.Error(), "HELD") {
			return 0, fmt.Errorf("lease: claim partition %d: %w (%s)", partition, ErrHeld, err.Error())
		}
		return 0, fmt.Errorf("lease: claim partition %d: %w", partition, err)
	}
	return epoch, nil
}

// Release frees partition if token still holds it, so the next owner can
// claim at once instead of waiting for the lease to expire.
func Release(ctx context.Context, rdb redis.UniversalClient, partition int, token string) (bool, error) {
	n, err := releaseScript.Run(ctx, rdb, []string{keys.For(partition).Owner()}, token, EventsChannel, partition).Int()
	if err != nil {
		return false, fmt.Errorf("lease: release partition %d: %w", partition, err)
	}
	return n == 1, nil
}
