package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// relayScript enqueues the jobs outbox entries emitted for one target
// partition, each entry's once: a second relay of an entry (after a crash
// between enqueue and trim) finds the entry's mark and adds nothing. The
// marks live in the target partition, so the script touches one slot.
// The target's due delayed jobs go first (see releaseDueLua).
//
// KEYS[1] target queue, KEYS[2] its delayed set, KEYS[3] its bodies,
// KEYS[3+e] entry e's mark in the target partition.
// ARGV[1] mark TTL s, ARGV[2] now unix ms, then per entry: n, then its n
// packed jobs (packJob).
// Returns the number of jobs enqueued.
var relayScript = redis.NewScript(releaseDueLua + `
releaseDue(KEYS[2], KEYS[3], KEYS[1], ARGV[2], -1)
local a, added = 3, 0
for e = 4, #KEYS do
  local n = tonumber(ARGV[a])
  if redis.call('SET', KEYS[e], '1', 'NX', 'EX', ARGV[1]) then
    for i = a + 1, a + n do
      redis.call('XADD', KEYS[1], '*', 'j', ARGV[i])
    end
    added = added + n
  end
  a = a + 1 + n
end
return added
`)

// relayMarkTTL is how long a relayed entry's mark is kept: far longer than
// an entry can stay in an outbox after it was relayed.
const relayMarkTTL = 24 * time.Hour

// Relay moves the jobs of up to max outbox entries (each holds what one
// commit emitted) from a partition's outbox to their target partitions'
// queues and returns how many entries it moved (see RelayMany).
func (s *Store) Relay(ctx context.Context, partition int, max int64, partitionOf func(key string) int) (int, error) {
	n, err := s.RelayMany(ctx, []int{partition}, max, partitionOf)
	return n[partition], err
}

// RelayMany relays up to max outbox entries of each of partitions in three
// round trips whatever their number: read the outboxes, enqueue, trim. It
// returns how many entries it moved per partition. It is at-least-once,
// and the jobs an entry emitted for one target go in one script call that
// marks the entry as relayed there, so a second relay adds nothing: the
// jobs are applied once. An entry's jobs keep their order in every target.
func (s *Store) RelayMany(ctx context.Context, partitions []int, max int64, partitionOf func(key string) int) (map[int]int, error) {
	pipe := s.rdb.Pipeline()
	reads := make([]*redis.XMessageSliceCmd, len(partitions))
	for i, p := range partitions {
		reads[i] = pipe.XRangeN(ctx, keys.For(p).Outbox(), "-", "+", max)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read outboxes: %w", err)
	}
	now := time.Now().UnixMilli()
	moved := map[int]int{}
	var legacy []Job
	// One call per source and target partition for all the entries read,
	// so a pipeline never holds two calls whose order matters.
	type call struct {
		keys []string
		args []any
	}
	var calls []*call
	for i, p := range partitions {
		msgs := reads[i].Val()
		if len(msgs) == 0 {
			continue
		}
		moved[p] = len(msgs)
		targets := map[int]*call{}
		for _, m := range msgs {
			packed, ok := m.Values["b"].(string)
			if !ok {
				// Written by an earlier version: jobs as fields, relayed
				// through Enqueue, whose idempotency records dedup them.
				for _, j := range unpackEmits(p, m) {
					j.Partition, j.SubmittedAt = partitionOf(j.Key), now
					legacy = append(legacy, j)
				}
				continue
			}
			byTarget := map[int][]any{}
			var order []int
			err := eachPacked([]byte(packed), func(raw []byte, j Job) {
				t := partitionOf(j.Key)
				if _, ok := byTarget[t]; !ok {
					order = append(order, t)
				}
				byTarget[t] = append(byTarget[t], raw)
			})
			if err != nil {
				return nil, fmt.Errorf("store: outbox entry %s of partition %d: %w", m.ID, p, err)
			}
			for _, t := range order {
				c := targets[t]
				if c == nil {
					tk := keys.For(t)
					c = &call{keys: []string{tk.Queue(), tk.Delayed(), tk.Bodies()}, args: []any{int64(relayMarkTTL.Seconds()), now}}
					targets[t] = c
					calls = append(calls, c)
				}
				c.keys = append(c.keys, keys.For(t).Relayed(p, m.ID))
				c.args = append(c.args, len(byTarget[t]))
				c.args = append(c.args, byTarget[t]...)
			}
		}
	}
	if len(calls) > 0 {
		// Running again after NOSCRIPT is safe: the marks make it a no-op
		// for the entries done the first time.
		cmds, err := s.evalPipelined(ctx, []*redis.Script{relayScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, 0, len(calls))
			for _, c := range calls {
				cmds = append(cmds, relayScript.EvalSha(ctx, pipe, c.keys, c.args...))
			}
			return cmds
		})
		if err == nil {
			for _, c := range cmds {
				if err = c.Err(); err != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("store: relay: %w", err)
		}
	}
	if len(legacy) > 0 {
		res, err := s.Enqueue(ctx, legacy)
		if err != nil {
			return nil, err
		}
		for i, r := range res {
			if r.Err != nil && !isConflict(r.Err) {
				return nil, fmt.Errorf("store: relay %q: %w", legacy[i].ID, r.Err)
			}
		}
	}
	// The entries read are each outbox's head: one XTRIM MINID drops them.
	pipe = s.rdb.Pipeline()
	for i, p := range partitions {
		msgs := reads[i].Val()
		if len(msgs) == 0 {
			continue
		}
		ids := make([]string, len(msgs))
		for j, m := range msgs {
			ids[j] = m.ID
		}
		if min, ok := afterID(ids); ok {
			pipe.XTrimMinID(ctx, keys.For(p).Outbox(), min)
		} else {
			pipe.XDel(ctx, keys.For(p).Outbox(), ids...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: trim outboxes: %w", err)
	}
	return moved, nil
}

// eachPacked calls fn with every job of a packEmits value, raw and unpacked.
func eachPacked(b []byte, fn func(raw []byte, j Job)) error {
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return errBadPackedJob
		}
		raw := b[w : w+int(n)]
		b = b[w+int(n):]
		var j Job
		if err := unpackJob(raw, &j); err != nil {
			return err
		}
		fn(raw, j)
	}
	return nil
}

// unpackEmits reads the jobs of an outbox entry as earlier versions wrote
// it: "n" count and "i<n>", "h<n>", "k<n>", "p<n>" per job, or one job.
func unpackEmits(partition int, m redis.XMessage) []Job {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	n, err := strconv.Atoi(str("n"))
	if err != nil {
		j := jobFromStream(partition, "", m.Values)
		return []Job{j}
	}
	out := make([]Job, n)
	for i := range out {
		x := strconv.Itoa(i)
		out[i] = Job{ID: str("i" + x), Handler: str("h" + x), Key: str("k" + x), Payload: []byte(str("p" + x)), Attempt: 1}
	}
	return out
}
