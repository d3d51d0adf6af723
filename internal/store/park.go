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
	return s.keyRuns(ctx, partition, heads, maxWaiting)
}

// keyRuns is each parked job of heads with up to maxWaiting of the jobs
// waiting behind it.
func (s *Store) keyRuns(ctx context.Context, partition int, heads []Job, maxWaiting int64) ([]KeyRun, error) {
	k := keys.For(partition)
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
