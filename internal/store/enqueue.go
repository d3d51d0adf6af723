package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// ErrConflict means a job id was already submitted with other content.
var ErrConflict = errors.New("job id already used with different content")

// enqueueScript appends a job to its partition's stream once per id, or,
// when it has a not-before in the future, adds it to the delayed set.
//
// KEYS[1] job record, KEYS[2] partition stream, KEYS[3] delayed set,
// KEYS[4] bodies
// ARGV[1] content hash, ARGV[2] due unix ms (0 = now), ARGV[3] id,
// ARGV[4] encoded job (delayed only), ARGV[5..] stream entry fields
// Returns 1 if enqueued, 0 if the same job was already submitted, -1 if the
// id was used for other content.
var enqueueScript = redis.NewScript(`
local h = redis.call('HGET', KEYS[1], 'h')
if h then
  if h == ARGV[1] then return 0 end
  return -1
end
redis.call('HSET', KEYS[1], 'h', ARGV[1], 's', 'q')
if ARGV[2] ~= '0' then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
  return 1
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
return 1
`)

// EnqueueResult tells what happened to one job.
type EnqueueResult struct {
	Duplicate bool  // already submitted with the same content; not enqueued again
	Err       error // ErrConflict or a Redis error
}

// Enqueue appends jobs to their partitions' streams in one pipeline; a job
// whose NotBefore is in the future is held in its partition's delayed set
// instead. Each job's Partition must be set.
func (s *Store) Enqueue(ctx context.Context, jobs []Job) ([]EnqueueResult, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	now := time.Now().UnixMilli()
	cmds, err := s.evalPipelined(ctx, []*redis.Script{enqueueScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(jobs))
		for i := range jobs {
			j := &jobs[i]
			k := keys.For(j.Partition)
			due, enc := "0", ""
			if j.NotBefore > now {
				due, enc = itoa(j.NotBefore), j.encode()
			}
			args := append([]any{j.ContentHash(), due, j.ID, enc}, j.streamFields()...)
			cmds[i] = enqueueScript.EvalSha(ctx, pipe, []string{k.Job(j.ID), k.Queue(), k.Delayed(), k.Bodies()}, args...)
		}
		return cmds
	})
	if err != nil {
		return nil, err
	}
	out := make([]EnqueueResult, len(jobs))
	for i, c := range cmds {
		n, err := c.Int()
		switch {
		case err != nil:
			out[i].Err = fmt.Errorf("store: enqueue %q: %w", jobs[i].ID, err)
		case n < 0:
			out[i].Err = fmt.Errorf("job %q: %w", jobs[i].ID, ErrConflict)
		default:
			out[i].Duplicate = n == 0
		}
	}
	return out, nil
}

func isConflict(err error) bool { return errors.Is(err, ErrConflict) }
