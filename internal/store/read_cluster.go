package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// clusterPoll is how often an idle worker on Redis Cluster looks for new
// jobs; a single blocking read cannot wait on several slots there.
const clusterPoll = 10 * time.Millisecond

// isCluster says whether rdb is a Redis Cluster client, where one command
// may only name keys of one hash slot.
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// readEach is Read for Redis Cluster: every partition is its own hash slot,
// so it sends one non-blocking XREAD per partition in one pipeline (the
// client sends each node its share in parallel) and, while nothing comes,
// polls again until block has passed.
func (s *Store) readEach(ctx context.Context, cursors map[int]string, count int64, block time.Duration) (map[int][]Job, error) {
	deadline := time.Now().Add(block)
	for {
		pipe := s.rdb.Pipeline()
		cmds := make(map[int]*redis.XStreamSliceCmd, len(cursors))
		for p, c := range cursors {
			cmds[p] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{keys.For(p).Queue(), c}, Count: count, Block: -1})
		}
		pipe.Exec(ctx) // errors are per command, below; "no entries" is redis.Nil
		out := map[int][]Job{}
		for p, cmd := range cmds {
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("store: read stream of partition %d: %w", p, err)
			}
			for _, st := range cmd.Val() {
				if len(st.Messages) == 0 {
					continue
				}
				jobs := make([]Job, len(st.Messages))
				for i, m := range st.Messages {
					jobs[i] = jobFromStream(p, m.ID, m.Values)
				}
				out[p] = jobs
			}
		}
		if len(out) > 0 || !time.Now().Before(deadline) {
			return out, nil
		}
		t := time.NewTimer(min(clusterPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
