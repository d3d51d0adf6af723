package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/redis/go-redis/v9"
)

// releaseDueLua is a Lua function that moves the delayed jobs of a
// partition due at now, up to max of them (-1: all), to the tail of its
// stream, in the order they are due, and returns how many it moved. A
// delayed job's body is its packed stream entry (see Enqueue), so moving
// it is a copy. The release script of the owner runs it, and so do the
// scripts that append jobs to a stream (enqueue, relay) before they
// append: a job submitted after a delayed job of its key became due lands
// behind it even if the owner has not moved it yet.
const releaseDueLua = `
local function releaseDue(delayed, bodies, stream, now, max)
  local ids = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local b = redis.call('HGET', bodies, id)
    if b then redis.call('XADD', stream, '*', 'j', b) end
    redis.call('HDEL', bodies, id)
    redis.call('ZREM', delayed, id)
  end
  return #ids
end
`

// releaseScript moves due delayed jobs to the tail of the partition's
// stream, under the owner's epoch: a delayed job counts as submitted when
// it becomes due, so it never holds its key while it waits.
//
// KEYS[1] epoch, KEYS[2] delayed set, KEYS[3] bodies, KEYS[4] stream
// ARGV[1] the owner's grant (see lease.Grant), ARGV[2] now unix ms, ARGV[3] most jobs to move.
// Returns the number of jobs moved, or an error "FENCED <current>".
var releaseScript = redis.NewScript(releaseDueLua + `
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(cur))
end
return releaseDue(KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3])
`)

// ReleaseDue moves up to max delayed jobs of partition that are due at
// now (unix ms) into its stream, and returns how many it moved.
func (s *Store) ReleaseDue(ctx context.Context, partition int, grant lease.Grant, now int64, max int64) (int, error) {
	k := keys.For(partition)
	n, err := releaseScript.Run(ctx, s.rdb, []string{k.Epoch(), k.Delayed(), k.Bodies(), k.Queue()}, grant.String(), itoa(now), max).Int()
	if err != nil {
		return 0, fenceErr("release delayed jobs", partition, grant, err)
	}
	return n, nil
}

// delayedBody is what a delayed job keeps in the bodies hash: its stream
// entry as it will be when due, when it counts as submitted.
func delayedBody(j *Job) []byte {
	d := *j
	d.SubmittedAt, d.NotBefore = j.NotBefore, 0
	return packJob(&d)
}

// bodies reads encoded jobs by id; ids without a body are left out.
func (s *Store) bodies(ctx context.Context, partition int, ids []string) ([]Job, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := s.rdb.HMGet(ctx, keys.For(partition).Bodies(), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read job bodies of partition %d: %w", partition, err)
	}
	out := make([]Job, 0, len(ids))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		j, err := decodeJob(partition, str)
		if err != nil {
			return nil, fmt.Errorf("store: decode job %q of partition %d: %w", ids[i], partition, err)
		}
		out = append(out, j)
	}
	return out, nil
}

// KeyRun is a held key whose parked job is due: the parked job first, then
// the jobs waiting behind it, in order. More is true when the waiting list
// is longer than what was read.
type KeyRun struct {
	Key  string
	Jobs []Job
	More bool
}

// LoadParked returns the held keys of partition whose parked job is due
// at now (unix ms), up to maxKeys keys and maxWaiting waiting jobs each.
func (s *Store) LoadParked(ctx context.Context, partition int, now int64, maxKeys, maxWaiting int64) ([]KeyRun, error) {
	k := keys.For(partition)
	ids, err := s.rdb.ZRangeByScore(ctx, k.Parked(), &redis.ZRangeBy{Min: "-inf", Max: itoa(now), Count: maxKeys}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read parked jobs of partition %d: %w", partition, err)
	}
	heads, err := s.bodies(ctx, partition, ids)
	if err != nil || len(heads) == 0 {
		return nil, err
	}
	pipe := s.rdb.Pipeline()
	lists := make([]*redis.StringSliceCmd, len(heads))
	lens := make([]*redis.IntCmd, len(heads))
	for i, h := range heads {
		lists[i] = pipe.LRange(ctx, k.Waiting(h.Key), 0, maxWaiting-1)
		lens[i] = pipe.LLen(ctx, k.Waiting(h.Key))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read waiting jobs of partition %d: %w", partition, err)
	}
	runs := make([]KeyRun, len(heads))
	for i, h := range heads {
		wids := lists[i].Val()
		waiting, err := s.bodies(ctx, partition, wids)
		if err != nil {
			return nil, err
		}
		if len(waiting) != len(wids) {
			return nil, fmt.Errorf("store: partition %d: %d of the jobs waiting on key %q have no body", partition, len(wids)-len(waiting), h.Key)
		}
		runs[i] = KeyRun{Key: h.Key, Jobs: append([]Job{h}, waiting...), More: lens[i].Val() > int64(len(wids))}
	}
	return runs, nil
}

func fenceErr(op string, partition int, grant lease.Grant, err error) error {
	if strings.HasPrefix(err.Error(), "FENCED") {
		return fmt.Errorf("store: %s of partition %d under grant %v: %w (%s)", op, partition, grant, lease.ErrFenced, err.Error())
	}
	return fmt.Errorf("store: %s of partition %d: %w", op, partition, err)
}

// Due says which partitions have delayed jobs due, and which have parked
// jobs due, at now (unix ms), in one round trip.
func (s *Store) Due(ctx context.Context, partitions []int, now int64) (delayed, parked map[int]bool, err error) {
	delayed, parked = map[int]bool{}, map[int]bool{}
	if len(partitions) == 0 {
		return delayed, parked, nil
	}
	pipe := s.rdb.Pipeline()
	ds := make([]*redis.StringSliceCmd, len(partitions))
	ps := make([]*redis.StringSliceCmd, len(partitions))
	by := &redis.ZRangeBy{Min: "-inf", Max: itoa(now), Count: 1}
	for i, p := range partitions {
		k := keys.For(p)
		ds[i] = pipe.ZRangeByScore(ctx, k.Delayed(), by)
		ps[i] = pipe.ZRangeByScore(ctx, k.Parked(), by)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("store: look for due jobs: %w", err)
	}
	for i, p := range partitions {
		if len(ds[i].Val()) > 0 {
			delayed[p] = true
		}
		if len(ps[i].Val()) > 0 {
			parked[p] = true
		}
	}
	return delayed, parked, nil
}
