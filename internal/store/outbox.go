package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Relay moves the jobs of up to max outbox entries (each holds what one
// commit emitted) from a partition's outbox to their target partitions'
// queues and returns how many entries it moved. It is at-least-once:
// a crash between enqueue and delete relays again, and the target's
// idempotency record turns the second copy into a duplicate.
func (s *Store) Relay(ctx context.Context, partition int, max int64, partitionOf func(key string) int) (int, error) {
	k := keys.For(partition)
	msgs, err := s.rdb.XRangeN(ctx, k.Outbox(), "-", "+", max).Result()
	if err != nil {
		return 0, fmt.Errorf("store: read outbox of partition %d: %w", partition, err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	now := time.Now().UnixMilli()
	jobs := make([]Job, 0, len(msgs))
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
		for _, j := range unpackEmits(partition, m) {
			j.Partition = partitionOf(j.Key)
			j.SubmittedAt = now
			jobs = append(jobs, j)
		}
	}
	res, err := s.Enqueue(ctx, jobs)
	if err != nil {
		return 0, err
	}
	for i, r := range res {
		// A conflict would mean two different emits derived the same id;
		// it cannot succeed on a later try either, so it is not retried.
		if r.Err != nil && !isConflict(r.Err) {
			return 0, fmt.Errorf("store: relay %q: %w", jobs[i].ID, r.Err)
		}
	}
	if err := s.trimOutbox(ctx, k.Outbox(), ids); err != nil {
		return 0, fmt.Errorf("store: trim outbox of partition %d: %w", partition, err)
	}
	return len(msgs), nil
}

// trimOutbox drops the relayed entries. They were read from the start of
// the outbox and new entries only get higher ids, so everything below the
// last one read plus one is exactly what was relayed: one XTRIM MINID costs
// Redis much less than deleting the entries one by one.
func (s *Store) trimOutbox(ctx context.Context, key string, ids []string) error {
	last := ids[len(ids)-1]
	ms, seq, ok := strings.Cut(last, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == ^uint64(0) {
		return s.rdb.XDel(ctx, key, ids...).Err()
	}
	return s.rdb.XTrimMinID(ctx, key, ms+"-"+strconv.FormatUint(n+1, 10)).Err()
}

// unpackEmits reads the jobs of one outbox entry: a packed one (see
// packEmits) or one job per entry, as earlier versions wrote them.
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
