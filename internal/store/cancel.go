package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// A cancel is asked for in two steps. Anyone records the ask in the job's
// partition (RequestCancels); it changes nothing yet. The partition's
// owner then applies it in a batch commit, under its grant, like any
// other outcome (Cancels): the job finishes as cancelled in the same
// script that would otherwise have acked or parked it, so a job either
// ran or is cancelled, never both, and a refused commit applies neither.

// Cancels is what a batch does to cancel jobs (see Batch).
type Cancels struct {
	// Cancelled are jobs of the batch, read from the queue or parked or
	// waiting behind their key, that a cancel took before they ran: they
	// were not sent to the plugin, finish as cancelled, and their cancels
	// are settled.
	Cancelled []Cancellation
	// Revoked are delayed jobs to cancel, each only if it is still delayed
	// when the commit runs; else its cancel stays for a later batch.
	Revoked []Job
	// Unwaited are jobs waiting behind a held key that the batch did not
	// read: they leave the key's line and finish as cancelled.
	Unwaited []Job
	// Settled are cancels asked for jobs found finished, or gone: dropped.
	Settled []string
}

// Cancellation is a job a batch cancels.
type Cancellation struct {
	JobID    string
	Attempts int    // attempts made before the cancel
	Error    string // its last error, kept as the record's reason
}

// requestCancelsScript records cancels of jobs in partition p, unless p
// is being split (its jobs are being copied to its children: a cancel
// added now would stay behind) or was split and a job is no longer in p
// (it moved to a child, with its record or body): then it refuses with
// MOVING, the caller finds the jobs again and asks there. Cancels recorded
// before the split are copied with their jobs (SplitPartition).
//
// KEYS[1] cancels, KEYS[2] split mark, KEYS[3] bodies, then KEYS[3+i] the
// record of job i. ARGV[1] now unix ms, then ARGV[1+i] the id of job i.
var requestCancelsScript = redis.NewScript(`
local sp = redis.call('GET', KEYS[2])
if sp then
  if string.sub(sp, 1, 1) ~= 'd' then return redis.error_reply('MOVING ' .. sp) end
  for i = 2, #ARGV do
    if redis.call('EXISTS', KEYS[2 + i]) == 0 and redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then
      return redis.error_reply('MOVING ' .. sp)
    end
  end
end
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i]) end
return 1
`)

// RequestCancels records that jobs of partition p are to be cancelled; the
// owner applies it (see LoadCancels and Cancels). Asking again for the
// same job keeps the first ask's time. It fails with a MovingError, and
// records nothing, while p is being split, or when p was split and a job
// is no longer in it: find the jobs again and ask in their partitions.
func (s *Store) RequestCancels(ctx context.Context, p int, ids []string, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	k := keys.For(p)
	ks := make([]string, 0, 3+len(ids))
	ks = append(ks, k.Cancels(), k.Split(), k.Bodies())
	args := make([]any, 0, 1+len(ids))
	args = append(args, now.UnixMilli())
	for _, id := range ids {
		ks = append(ks, k.Job(id))
		args = append(args, id)
	}
	if err := movingErr(p, s.runScript(ctx, requestCancelsScript, ks, args...).Err()); err != nil {
		return fmt.Errorf("store: ask to cancel jobs of partition %d: %w", p, err)
	}
	return nil
}

// PendingCancels says which of partitions have cancels waiting to be
// applied, in one round trip.
func (s *Store) PendingCancels(ctx context.Context, partitions []int) (map[int]bool, error) {
	out := map[int]bool{}
	if len(partitions) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(partitions))
	for i, p := range partitions {
		cmds[i] = pipe.Exists(ctx, keys.For(p).Cancels())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: look for cancels: %w", err)
	}
	for i, p := range partitions {
		if cmds[i].Val() > 0 {
			out[p] = true
		}
	}
	return out, nil
}

// CancelPlace is where a job to cancel is.
type CancelPlace int

const (
	// CancelGone: no record and no body (its record expired): nothing to cancel.
	CancelGone CancelPlace = iota
	// CancelFinished: its record says it finished: too late to cancel.
	CancelFinished
	// CancelDelayed: in the delayed set.
	CancelDelayed
	// CancelParked: holds its key, waiting for a retry, for a worker that
	// serves its handler, or for its turn.
	CancelParked
	// CancelWaiting: in its key's line behind the parked job.
	CancelWaiting
	// CancelQueued: in the queue (or in a batch in flight): the batch that
	// reads it cancels it.
	CancelQueued
)

// CancelRequest is a cancel waiting in a partition, with where its job is.
type CancelRequest struct {
	ID    string
	Place CancelPlace
	// Job is the job's body when it is delayed, parked or waiting.
	Job Job
}

// LoadCancels reads up to max cancels waiting in partition p, oldest
// first, and finds each one's job, in two round trips.
func (s *Store) LoadCancels(ctx context.Context, p int, max int64) ([]CancelRequest, error) {
	k := keys.For(p)
	ids, err := s.rdb.ZRange(ctx, k.Cancels(), 0, max-1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read the cancels of partition %d: %w", p, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	recs := make([]*redis.SliceCmd, len(ids))
	delayed := make([]*redis.FloatCmd, len(ids))
	parked := make([]*redis.FloatCmd, len(ids))
	bodies := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		recs[i] = pipe.HMGet(ctx, k.Job(id), "s", "h")
		delayed[i] = pipe.ZScore(ctx, k.Delayed(), id)
		parked[i] = pipe.ZScore(ctx, k.Parked(), id)
		bodies[i] = pipe.HGet(ctx, k.Bodies(), id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: find the jobs to cancel in partition %d: %w", p, err)
	}
	out := make([]CancelRequest, len(ids))
	for i, id := range ids {
		r := CancelRequest{ID: id}
		rec := recs[i].Val()
		body, hasBody := bodies[i].Val(), bodies[i].Err() == nil
		switch {
		case len(rec) == 2 && rec[0] != nil:
			r.Place = CancelFinished
		case delayed[i].Err() == nil && hasBody:
			r.Place = CancelDelayed
			if err := unpackJob([]byte(body), &r.Job); err != nil {
				return nil, fmt.Errorf("store: delayed job %q of partition %d: %w", id, p, err)
			}
			r.Job.Partition, r.Job.NotBefore = p, int64(delayed[i].Val())
		case hasBody:
			r.Place = CancelWaiting
			if parked[i].Err() == nil {
				r.Place = CancelParked
			}
			if r.Job, err = decodeJob(p, body); err != nil {
				return nil, fmt.Errorf("store: job %q of partition %d: %w", id, p, err)
			}
		case len(rec) == 2 && rec[1] != nil:
			r.Place = CancelQueued
		}
		out[i] = r
	}
	return out, nil
}

// KeyRunsOf is LoadParked for given parked jobs, due or not: each one's
// key with up to maxWaiting of the jobs waiting behind it.
func (s *Store) KeyRunsOf(ctx context.Context, p int, heads []Job, maxWaiting int64) ([]KeyRun, error) {
	return s.keyRuns(ctx, p, heads, maxWaiting)
}

// logRetention is how long the finished log keeps an entry: as long as
// the longest kept record it names; 0 for ever.
func (s *Store) logRetention() time.Duration {
	if s.cfg.DoneRetention <= 0 || s.cfg.ResultRetention <= 0 {
		return 0
	}
	return max(s.cfg.DoneRetention, s.cfg.ResultRetention)
}
