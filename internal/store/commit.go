package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/redis/go-redis/v9"
)

// Job record statuses.
const (
	statusQueued = "q"
	statusDone   = "d"
	statusDead   = "x"
)

// commitScript applies one partition batch under a fencing epoch: all of it
// or, if the epoch is stale, none of it.
//
// KEYS[1] epoch, KEYS[2] queue, KEYS[3] outbox, KEYS[4] dead letters,
// KEYS[5] audit, then one job record per finished job, one state key per
// state write, one result key per result.
// ARGV[1] epoch, ARGV[2..8] counts: finished, states, results, acked stream
// ids, emits, retries, dead; ARGV[9] done TTL s, ARGV[10] result TTL s,
// ARGV[11] audit "1"/"0"; then in order: (id, status) per finished job,
// state values, result values, acked stream ids, 4 fields per emit
// (id, handler, key, payload), 6 per retry (id, handler, key, payload,
// submitted, attempt), 6 per dead job (id, handler, key, payload, attempt,
// error).
// Returns the number of finished jobs, or an error "FENCED <current>".
var commitScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(cur))
end
local nF, nS, nR, nA = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local nE, nT, nD = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local doneTTL, resTTL, audit = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11] == '1'
local a, k = 12, 6
for i = 1, nF do
  redis.call('HSET', KEYS[k], 's', ARGV[a + 1])
  if doneTTL > 0 then redis.call('EXPIRE', KEYS[k], doneTTL) end
  if audit then redis.call('XADD', KEYS[5], '*', 'e', ARGV[1], 'id', ARGV[a]) end
  a, k = a + 2, k + 1
end
for i = 1, nS do
  redis.call('SET', KEYS[k], ARGV[a])
  a, k = a + 1, k + 1
end
for i = 1, nR do
  if resTTL > 0 then redis.call('SET', KEYS[k], ARGV[a], 'EX', resTTL) else redis.call('SET', KEYS[k], ARGV[a]) end
  a, k = a + 1, k + 1
end
for i = 1, nA do
  redis.call('XDEL', KEYS[2], ARGV[a])
  a = a + 1
end
for i = 1, nE do
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[a], 'h', ARGV[a + 1], 'k', ARGV[a + 2], 'p', ARGV[a + 3])
  a = a + 4
end
for i = 1, nT do
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[a], 'h', ARGV[a + 1], 'k', ARGV[a + 2], 'p', ARGV[a + 3], 't', ARGV[a + 4], 'a', ARGV[a + 5])
  a = a + 6
end
for i = 1, nD do
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[a], 'h', ARGV[a + 1], 'k', ARGV[a + 2], 'p', ARGV[a + 3], 'a', ARGV[a + 4], 'err', ARGV[a + 5])
  a = a + 6
end
return nF
`)

// StateWrite replaces an entity's state.
type StateWrite struct {
	Entity EntityRef
	Value  []byte
}

// Result is a job's result, kept for ResultRetention.
type Result struct {
	JobID string
	Value []byte
}

// DeadJob is a job that exhausted its attempts or failed for good.
type DeadJob struct {
	Job   Job
	Error string
}

// Batch is everything one partition batch commits.
type Batch struct {
	Done    []string // job ids applied
	Acked   []string // stream ids to remove from the queue (every job read)
	States  []StateWrite
	Results []Result
	Emits   []Job     // follow-up jobs for the outbox (ids already derived)
	Retries []Job     // jobs to deliver again, attempt already incremented
	Dead    []DeadJob // jobs moved to the dead-letter stream
}

// CommitBatch applies b to partition under epoch. It returns an error
// wrapping lease.ErrFenced if another worker has been granted the partition
// since, in which case nothing was written.
func (s *Store) CommitBatch(ctx context.Context, partition int, epoch int64, b *Batch) error {
	k := keys.For(partition)
	nF := len(b.Done) + len(b.Dead)
	ks := make([]string, 0, 5+nF+len(b.States)+len(b.Results))
	ks = append(ks, k.Epoch(), k.Queue(), k.Outbox(), k.Dead(), k.Audit())
	args := make([]any, 0, 11+2*nF+len(b.States)+len(b.Results)+len(b.Acked)+4*len(b.Emits)+6*len(b.Retries)+6*len(b.Dead))
	audit := "0"
	if s.cfg.Audit {
		audit = "1"
	}
	args = append(args, itoa(epoch), nF, len(b.States), len(b.Results), len(b.Acked), len(b.Emits), len(b.Retries), len(b.Dead),
		int64(s.cfg.DoneRetention.Seconds()), int64(s.cfg.ResultRetention.Seconds()), audit)
	for _, id := range b.Done {
		ks = append(ks, k.Job(id))
		args = append(args, id, statusDone)
	}
	for _, d := range b.Dead {
		ks = append(ks, k.Job(d.Job.ID))
		args = append(args, d.Job.ID, statusDead)
	}
	for _, w := range b.States {
		ks = append(ks, k.State(w.Entity.Type, w.Entity.Key))
		args = append(args, w.Value)
	}
	for _, r := range b.Results {
		ks = append(ks, k.Result(r.JobID))
		args = append(args, r.Value)
	}
	for _, id := range b.Acked {
		args = append(args, id)
	}
	for _, e := range b.Emits {
		args = append(args, e.ID, e.Handler, e.Key, e.Payload)
	}
	for _, r := range b.Retries {
		args = append(args, r.ID, r.Handler, r.Key, r.Payload, strconv.FormatInt(r.SubmittedAt, 10), r.Attempt)
	}
	for _, d := range b.Dead {
		args = append(args, d.Job.ID, d.Job.Handler, d.Job.Key, d.Job.Payload, d.Job.Attempt, d.Error)
	}
	err := commitScript.Run(ctx, s.rdb, ks, args...).Err()
	if err != nil && strings.HasPrefix(err.Error(), "FENCED") {
		return fmt.Errorf("store: commit partition %d at epoch %d: %w (%s)", partition, epoch, lease.ErrFenced, err.Error())
	}
	if err != nil {
		return fmt.Errorf("store: commit partition %d: %w", partition, err)
	}
	return nil
}
