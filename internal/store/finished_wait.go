package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// FinishedFrom places a wait on the finished logs of partitions at Redis's
// now: WaitFinished then sees every commit from this moment on. Take it
// before reading the statuses of the jobs to wait for, so a job that
// finishes in between is not missed.
func (s *Store) FinishedFrom(ctx context.Context, partitions []int) (map[int]string, error) {
	now, err := s.Now(ctx)
	if err != nil {
		return nil, err
	}
	from := make(map[int]string, len(partitions))
	for _, p := range partitions {
		from[p] = TopicStart(now)
	}
	return from, nil
}

// WaitFinished waits up to block until a commit in one of the partitions
// of from finishes one of ids (done, dead, rejected or cancelled), reading
// their finished logs after from, which it moves on. It says whether one
// did. It subscribes to the commits instead of polling the jobs: a
// blocking read on the logs, which every commit appends to. On Redis
// Cluster, where one read cannot block on several slots, it reads them
// every topicPoll.
func (s *Store) WaitFinished(ctx context.Context, from map[int]string, ids map[string]bool, block time.Duration) (bool, error) {
	if len(from) == 0 {
		return false, nil
	}
	deadline := time.Now().Add(block)
	parts := make([]int, 0, len(from))
	for p := range from {
		parts = append(parts, p)
	}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		var res []redis.XStream
		var err error
		if isCluster(s.rdb) {
			res, err = s.readFinishedEach(ctx, parts, from)
		} else {
			streams := make([]string, 0, 2*len(parts))
			for _, p := range parts {
				streams = append(streams, keys.For(p).Finished())
			}
			for _, p := range parts {
				streams = append(streams, from[p])
			}
			res, err = s.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Block: max(left, time.Millisecond)}).Result()
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, fmt.Errorf("store: wait for finished jobs: %w", err)
		}
		found := false
		for _, st := range res {
			p, err := partitionOfKey(st.Stream)
			if err != nil {
				return false, err
			}
			for _, m := range st.Messages {
				from[p] = m.ID
				for _, l := range loggedJobs(m.Values) {
					if ids[l.ID] {
						found = true
					}
				}
			}
		}
		if found {
			return true, nil
		}
		if isCluster(s.rdb) {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(min(topicPoll, time.Until(deadline))):
			}
		}
	}
}

// readFinishedEach reads the finished logs after from, one non-blocking
// read per partition in one pipeline (Redis Cluster).
func (s *Store) readFinishedEach(ctx context.Context, parts []int, from map[int]string) ([]redis.XStream, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(parts))
	for i, p := range parts {
		cmds[i] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{keys.For(p).Finished(), from[p]}, Block: -1})
	}
	pipe.Exec(ctx) // errors are per command; "no entries" is redis.Nil
	var out []redis.XStream
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		out = append(out, c.Val()...)
	}
	return out, nil
}
