package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// FlowSettings are a handler's runtime flow controls, set with
// `coordinator handler pause|resume|limit` and kept in Redis for the whole
// cluster. The zero value controls nothing.
type FlowSettings struct {
	// Paused: the handler's jobs wait, without spending attempts, until
	// it is resumed.
	Paused bool `json:"paused,omitempty"`
	// PausedAtMs is when it was paused (unix ms).
	PausedAtMs int64 `json:"paused_at_ms,omitempty"`
	// Concurrency, above 0, overrides the handler's declared concurrency:
	// at most that many of its attempts in flight in the cluster at once.
	Concurrency int `json:"concurrency,omitempty"`
	// Rate, above 0, is the most jobs per second the cluster starts, with
	// bursts of up to Burst (0: one second's worth, at least 1).
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
}

// IsZero says the settings control nothing and need not be kept.
func (f FlowSettings) IsZero() bool { return f == FlowSettings{} }

// BurstOrDefault is the bucket's size: Burst, else a second's worth of
// Rate, at least 1.
func (f FlowSettings) BurstOrDefault() int {
	if f.Burst > 0 {
		return f.Burst
	}
	return max(1, int(math.Ceil(f.Rate)))
}

// FlowSettings reads every handler's flow settings, in one command.
func (s *Store) FlowSettings(ctx context.Context) (map[string]FlowSettings, error) {
	raw, err := s.rdb.HGetAll(ctx, keys.FlowSettings).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read flow settings: %w", err)
	}
	out := make(map[string]FlowSettings, len(raw))
	for h, v := range raw {
		var f FlowSettings
		if err := json.Unmarshal([]byte(v), &f); err != nil {
			return nil, fmt.Errorf("store: flow settings of handler %q: %w", h, err)
		}
		out[h] = f
	}
	return out, nil
}

// setFlowScript replaces a handler's flow settings if they are still
// what the caller read (compare and set), so two updates at once do not
// lose one.
//
// KEYS[1] the settings hash (keys.FlowSettings).
// ARGV[1] handler, ARGV[2] the settings read ("" = none), ARGV[3] the new
// ones ("" = delete).
// Returns 1 when set, 0 when they changed meanwhile.
var setFlowScript = redis.NewScript(`
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
`)

// UpdateFlow changes handler's flow settings with change, atomically
// against other updates, and returns them as stored. Settings that end up
// controlling nothing are deleted.
func (s *Store) UpdateFlow(ctx context.Context, handler string, change func(*FlowSettings)) (FlowSettings, error) {
	for range 10 {
		old, err := s.rdb.HGet(ctx, keys.FlowSettings, handler).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return FlowSettings{}, fmt.Errorf("store: read flow settings of handler %q: %w", handler, err)
		}
		var f FlowSettings
		if old != "" {
			if err := json.Unmarshal([]byte(old), &f); err != nil {
				return FlowSettings{}, fmt.Errorf("store: flow settings of handler %q: %w", handler, err)
			}
		}
		change(&f)
		next := ""
		if !f.IsZero() {
			b, _ := json.Marshal(f)
			next = string(b)
		}
		ok, err := setFlowScript.Run(ctx, s.rdb, []string{keys.FlowSettings}, handler, old, next).Int()
		if err != nil {
			return FlowSettings{}, fmt.Errorf("store: update flow settings of handler %q: %w", handler, err)
		}
		if ok == 1 {
			return f, nil
		}
	}
	return FlowSettings{}, fmt.Errorf("store: update flow settings of handler %q: too many concurrent updates", handler)
}

// acquireSlotsScript is a handler's concurrency semaphore: it drops the
// slots whose lease ended, then grants up to the wanted number of free
// slots, each a member named holder:i scored by the end of its lease.
// Redis's clock stamps them, so workers' clocks need not agree.
//
// KEYS[1] the handler's slots (keys.Handler.Slots).
// ARGV[1] limit, ARGV[2] slots wanted, ARGV[3] holder (unique per call),
// ARGV[4] lease ms.
// Returns the members granted.
var acquireSlotsScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = math.min(tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1]), tonumber(ARGV[2]))
local out = {}
for i = 1, n do
  out[i] = ARGV[3] .. ':' .. i
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), out[i])
end
if n > 0 then redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[4])) end
return out
`)

// AcquireSlots takes up to n of handler's limit slots for lease, and
// returns the slots granted (perhaps none). holder must be unique per
// call; ReleaseSlots gives them back, and a slot not given back frees
// itself when its lease ends.
func (s *Store) AcquireSlots(ctx context.Context, handler string, limit, n int, holder string, lease time.Duration) ([]string, error) {
	res, err := acquireSlotsScript.Run(ctx, s.rdb, []string{keys.ForHandler(handler).Slots()},
		limit, n, holder, max(lease.Milliseconds(), 1)).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: acquire slots of handler %q: %w", handler, err)
	}
	return res, nil
}

// renewSlotsScript extends the leases of slots still held; a slot whose
// lease ended and was dropped is not taken again.
//
// KEYS[1] the handler's slots. ARGV[1] lease ms, ARGV[2...] the slots.
// Returns how many were extended.
var renewSlotsScript = redis.NewScript(`
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', expires, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return n
`)

// RenewSlots extends the leases of slots held, while their calls run; it
// says how many were still held.
func (s *Store) RenewSlots(ctx context.Context, handler string, slots []string, lease time.Duration) (int, error) {
	args := make([]any, 0, 1+len(slots))
	args = append(args, max(lease.Milliseconds(), 1))
	for _, m := range slots {
		args = append(args, m)
	}
	n, err := renewSlotsScript.Run(ctx, s.rdb, []string{keys.ForHandler(handler).Slots()}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("store: renew slots of handler %q: %w", handler, err)
	}
	return n, nil
}

// ReleaseSlots gives back slots AcquireSlots granted.
func (s *Store) ReleaseSlots(ctx context.Context, handler string, slots []string) error {
	if len(slots) == 0 {
		return nil
	}
	if err := s.rdb.ZRem(ctx, keys.ForHandler(handler).Slots(), slots).Err(); err != nil {
		return fmt.Errorf("store: release slots of handler %q: %w", handler, err)
	}
	return nil
}

// slotsHeldScript counts the slots whose lease has not ended, by Redis's
// clock.
//
// KEYS[1] the handler's slots. Returns the count.
var slotsHeldScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
`)

// SlotsHeld is how many of handler's slots are held now.
func (s *Store) SlotsHeld(ctx context.Context, handler string) (int64, error) {
	n, err := slotsHeldScript.Run(ctx, s.rdb, []string{keys.ForHandler(handler).Slots()}).Int64()
	if err != nil {
		return 0, fmt.Errorf("store: count slots of handler %q: %w", handler, err)
	}
	return n, nil
}

// takeTokensScript is a handler's token bucket: it fills the bucket at
// rate per second up to burst since it was last counted, then takes up to
// the wanted number of whole tokens (a negative number gives tokens back,
// up to burst). A new bucket is full. Redis's clock counts, so workers'
// clocks need not agree.
//
// KEYS[1] the handler's bucket (keys.Handler.Bucket).
// ARGV[1] rate per second, ARGV[2] burst, ARGV[3] tokens wanted.
// Returns {tokens granted, ms until the next whole token}.
var takeTokensScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
if tokens == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - tonumber(b[2])) * rate / 1000)
end
local got = 0
if want < 0 then
  tokens = math.min(burst, tokens - want)
else
  got = math.min(want, math.floor(tokens))
  tokens = tokens - got
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
local wait = 0
if tokens < 1 then wait = math.ceil((1 - tokens) * 1000 / rate) end
return {got, wait}
`)

// TakeTokens takes up to n tokens of handler's bucket (rate per second,
// burst at most) and returns how many it got and how long until the next
// token; a negative n gives tokens back.
func (s *Store) TakeTokens(ctx context.Context, handler string, rate float64, burst, n int) (int, time.Duration, error) {
	res, err := takeTokensScript.Run(ctx, s.rdb, []string{keys.ForHandler(handler).Bucket()},
		strconv.FormatFloat(rate, 'g', -1, 64), burst, n).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, 0, fmt.Errorf("store: take tokens of handler %q: %w (reply %v)", handler, err, res)
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

// wakeChunk is how many parked jobs WakeParked reads at once.
const wakeChunk = 1000

// WakeParked makes the parked jobs of partition whose handler is in
// handlers due at now, and says how many it woke: a resumed handler's
// jobs, parked for long while it was paused, run at once. It only moves
// the time a parked job is looked at again (ZADD XX: a job that left the
// parked set meanwhile is not added back), so it needs no grant.
func (s *Store) WakeParked(ctx context.Context, partition int, handlers map[string]bool, now int64) (int, error) {
	k := keys.For(partition)
	woken := 0
	by := &redis.ZRangeBy{Min: "(" + itoa(now), Max: "+inf", Count: wakeChunk}
	for {
		ids, err := s.rdb.ZRangeByScore(ctx, k.Parked(), by).Result()
		if err != nil {
			return woken, fmt.Errorf("store: read parked jobs of partition %d: %w", partition, err)
		}
		js, err := s.bodies(ctx, partition, ids)
		if err != nil {
			return woken, err
		}
		var wake []redis.Z
		for _, j := range js {
			if handlers[j.Handler] {
				wake = append(wake, redis.Z{Score: float64(now), Member: j.ID})
			}
		}
		if len(wake) > 0 {
			n, err := s.rdb.ZAddArgs(ctx, k.Parked(), redis.ZAddArgs{XX: true, Ch: true, Members: wake}).Result()
			if err != nil {
				return woken, fmt.Errorf("store: wake parked jobs of partition %d: %w", partition, err)
			}
			woken += int(n)
		}
		if len(ids) < wakeChunk {
			return woken, nil
		}
		by.Offset += int64(len(ids) - len(wake)) // the woken ones left the range
	}
}

// ErrQueueFull means a partition's queue holds as many jobs as
// Config.MaxQueueDepth allows: nothing more is enqueued there until its
// owner works some off. The error is a *QueueFullError.
var ErrQueueFull = errors.New("queue full")

// QueueFullError names the partition whose queue refused jobs.
type QueueFullError struct {
	Partition int
	Depth     int64 // jobs queued, delayed, parked and waiting when refused
	Max       int64 // Config.MaxQueueDepth
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("partition %d holds %d jobs, its limit of %d (--max-queue-depth)", e.Partition, e.Depth, e.Max)
}

func (e *QueueFullError) Unwrap() error { return ErrQueueFull }
