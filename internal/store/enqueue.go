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

// enqueueScript appends jobs of one partition to its stream, each once per
// id, or, when one has a not-before in the future, adds it to the delayed
// set. A whole partition group in one call costs Redis far less than one
// call per job, and every key shares the partition's hash tag. A new job
// record holds only the content hash: no status means queued.
//
// KEYS[1] partition stream, KEYS[2] delayed set, KEYS[3] bodies, then
// KEYS[3+i] the job record of job i.
// ARGV[1] job count, then per job: content hash, due unix ms (0 = now), id,
// encoded job (delayed only), field count, stream entry fields.
// Returns per job 1 if enqueued, 0 if the same job was already submitted,
// -1 if the id was used for other content.
var enqueueScript = redis.NewScript(`
local n, a, out = tonumber(ARGV[1]), 2, {}
for i = 1, n do
  local rec, hash, due, id, nf = KEYS[3 + i], ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 4])
  if redis.call('HSETNX', rec, 'h', hash) == 0 then
    out[i] = (redis.call('HGET', rec, 'h') == hash) and 0 or -1
  else
    if due ~= '0' then
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('HSET', KEYS[3], id, ARGV[a + 3])
    else
      redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + 5, a + 4 + nf))
    end
    out[i] = 1
  end
  a = a + 5 + nf
end
return out
`)

// enqueueChunk bounds one enqueue script call, so a large submission of
// one partition does not hold Redis for long.
const enqueueChunk = 512

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
	// Group by partition, keeping submission order within each, so that
	// per-key order holds and each script call touches one hash slot.
	byPart := map[int][]int{}
	var order []int
	for i := range jobs {
		p := jobs[i].Partition
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], i)
	}
	type call struct {
		idx []int
		cmd *redis.Cmd
	}
	var calls []call
	_, err := s.evalPipelined(ctx, []*redis.Script{enqueueScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		calls = calls[:0]
		var cmds []*redis.Cmd
		for _, p := range order {
			k := keys.For(p)
			all := byPart[p]
			for c := 0; c < len(all); c += enqueueChunk {
				idx := all[c:min(c+enqueueChunk, len(all))]
				ks := make([]string, 3, 3+len(idx))
				ks[0], ks[1], ks[2] = k.Queue(), k.Delayed(), k.Bodies()
				args := make([]any, 1, 1+len(idx)*17)
				args[0] = len(idx)
				for _, i := range idx {
					j := &jobs[i]
					due, enc := "0", ""
					if j.NotBefore > now {
						due, enc = itoa(j.NotBefore), j.encode()
					}
					f := j.streamFields()
					ks = append(ks, k.Job(j.ID))
					args = append(args, j.ContentHash(), due, j.ID, enc, len(f))
					args = append(args, f...)
				}
				cmd := enqueueScript.EvalSha(ctx, pipe, ks, args...)
				calls = append(calls, call{idx: idx, cmd: cmd})
				cmds = append(cmds, cmd)
			}
		}
		return cmds
	})
	if err != nil {
		return nil, err
	}
	out := make([]EnqueueResult, len(jobs))
	for _, c := range calls {
		res, err := c.cmd.Slice()
		if err == nil && len(res) != len(c.idx) {
			err = fmt.Errorf("%d results for %d jobs", len(res), len(c.idx))
		}
		for n, i := range c.idx {
			if err != nil {
				out[i].Err = fmt.Errorf("store: enqueue %q: %w", jobs[i].ID, err)
				continue
			}
			v, _ := res[n].(int64)
			switch {
			case v < 0:
				out[i].Err = fmt.Errorf("job %q: %w", jobs[i].ID, ErrConflict)
			default:
				out[i].Duplicate = v == 0
			}
		}
	}
	return out, nil
}

func isConflict(err error) bool { return errors.Is(err, ErrConflict) }
