package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/redis/go-redis/v9"
)

// Job record statuses. A queued job's record has none; versions before
// had "q" for a replayed job, which the commit treats the same.
const (
	statusDone = "d"
	statusDead = "x"
)

// ErrAlreadyFinished means a commit carried a job id that an earlier
// commit already finished; nothing of the batch was written.
var ErrAlreadyFinished = fmt.Errorf("job already finished")

// commitScript applies one partition batch under a fencing epoch: all of it
// or, if the epoch is stale or a job in it is already finished, none of it.
// The batch is a list of operations, each an opcode followed by its
// arguments, consuming keys from KEYS[10..] in order:
//
//	G key n has state hash (keys: state, job record, delayed set) refuse
//	                the batch (BUSY) unless the stream holds at most n
//	                entries, none of key, key is not held, no delayed job
//	                is due, the state is as given (has "1") and the job
//	                record is new; then create it (see Guard). Comes first.
//	C id st attempt emits (key: job record) finish the job (st "d" done,
//	                "x" dead) and record how many jobs it emitted: the
//	                status is set only if it is not set yet, so a job
//	                finished before refuses the batch (the claims made so
//	                far are undone first); the same id again in the batch
//	                is a duplicate and changes nothing
//	D id            audit a finished job (only with audit on)
//	X id attempt rec store a dead letter (and audit it)
//	U id            drop a finished job's parked entry and body
//	S value         (key: state) write an entity's state
//	R value         (key: job record) store a finished job's result in its
//	                record, kept for the longer of the two retentions
//	A n streamid... ack n stream entries
//	M first min n   ack the n entries that follow, all of the stream below
//	                min, by one XTRIM MINID if first is still the stream's
//	                head; if it is not, the A operations that follow do it
//	O jobs          append the batch's emitted jobs to the outbox as one
//	                entry, packed in one field (see packEmits)
//	T n             (key: waiting list) drop the first n waiting jobs
//	F id body       (key: waiting list) put a job at the front
//	B id body       (key: waiting list) put a job at the back
//	P key id nb body park a job that holds key until nb (unix ms)
//	N key           (key: waiting list) the key's parked job finished: park
//	                the next waiting job as due now, or lift the hold
//
// The C operations come first, so a refused batch has written nothing but
// the claims it undoes. A job replayed from the dead letters by an older
// version has status "q"; it is claimed like one without a status.
//
// Besides the grant, the script checks that Redis still has every commit
// the worker saw acknowledged under it (ARGV[6]; KEYS[10] counts them as
// "grant count"): if Redis lost one (a restore, a replica promoted behind),
// the batch was built on state Redis no longer has, and it is refused
// with "LOST", as a stale owner's would be.
//
// KEYS[1] epoch, [2] queue, [3] outbox, [4] dead letters, [5] dead index,
// [6] audit, [7] parked, [8] holds, [9] bodies, [10] commit count.
// ARGV[1] the owner's grant (see lease.Grant), [2] now unix ms, [3] done
// TTL s, [4] result TTL s, [5] audit: entries kept in the audit stream,
// about, or "0" for no audit; [6] commits seen under the grant; then the
// operations.
// Returns the commits made under the grant, this one included, or an
// error "FENCED <current>", "LOST <count>", "ALREADY <id>" or "BUSY <what>".
var commitScript = redis.NewScript(`
-- packedKey is the key of a job packed for a stream entry (see packJob):
-- a version byte, then id, handler and key, each after its uvarint length.
local function packedKey(s)
  local i = 2
  for f = 1, 3 do
    local n, mul = 0, 1
    while true do
      local b = s:byte(i)
      if not b then return nil end
      i = i + 1
      n = n + (b % 128) * mul
      if b < 128 then break end
      mul = mul * 128
    end
    if f == 3 then return s:sub(i, i + n - 1) end
    i = i + n
  end
end
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(cur))
end
local commits = 0
local seq = redis.call('GET', KEYS[10])
if seq then
  local g, c = string.match(seq, '^(%S+) (%d+)$')
  if g == ARGV[1] then commits = tonumber(c) end
end
if commits < tonumber(ARGV[6]) then
  return redis.error_reply('LOST ' .. commits)
end
local now, doneTTL, resTTL = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local a, k, n = 7, 11, 0
local claimed, mine, mset = {}, {}, {}
while a <= #ARGV do
  local op = ARGV[a]
  n = n + 1
  if op == 'G' then
    local es = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[a + 2]) + 1)
    if #es > tonumber(ARGV[a + 2]) or redis.call('HEXISTS', KEYS[8], ARGV[a + 1]) == 1 then
      return redis.error_reply('BUSY queue')
    end
    for _, e in ipairs(es) do
      if e[2][1] ~= 'j' or packedKey(e[2][2]) == ARGV[a + 1] then
        return redis.error_reply('BUSY queue')
      end
    end
    if #redis.call('ZRANGEBYSCORE', KEYS[k + 2], '-inf', now, 'LIMIT', 0, 1) > 0 then
      return redis.error_reply('BUSY delayed')
    end
    local st = redis.call('GET', KEYS[k])
    if (ARGV[a + 3] == '1') ~= (st ~= false) or (st and st ~= ARGV[a + 4]) then
      return redis.error_reply('BUSY state')
    end
    if redis.call('HSETNX', KEYS[k + 1], 'h', ARGV[a + 5]) == 0 then
      return redis.error_reply('BUSY id')
    end
    a, k = a + 6, k + 3
  elseif op == 'C' then
    local rec = KEYS[k]
    if not mine[rec] then
      if redis.call('HSETNX', rec, 's', ARGV[a + 2]) == 0 then
        if redis.call('HGET', rec, 's') ~= 'q' then
          for _, r in ipairs(claimed) do
            redis.call('HDEL', r, 's', 'a', 'e')
            redis.call('PERSIST', r)
          end
          return redis.error_reply('ALREADY ' .. ARGV[a + 1])
        end
        redis.call('HSET', rec, 's', ARGV[a + 2])
      end
      claimed[#claimed + 1], mine[rec] = rec, true
      if ARGV[a + 3] ~= '1' then redis.call('HSET', rec, 'a', ARGV[a + 3]) end
      if ARGV[a + 4] ~= '0' then redis.call('HSET', rec, 'e', ARGV[a + 4]) end
      if doneTTL > 0 then redis.call('EXPIRE', rec, doneTTL) end
    end
    a, k = a + 5, k + 1
  elseif op == 'S' then
    -- States are written together, by one MSET per 1000 of them.
    mset[#mset + 1], mset[#mset + 2] = KEYS[k], ARGV[a + 1]
    if #mset >= 2000 then
      redis.call('MSET', unpack(mset))
      mset = {}
    end
    a, k = a + 2, k + 1
  elseif op == 'R' then
    redis.call('HSET', KEYS[k], 'r', ARGV[a + 1])
    if doneTTL > 0 and resTTL == 0 then
      redis.call('PERSIST', KEYS[k])
    elseif doneTTL > 0 and resTTL > doneTTL then
      redis.call('EXPIRE', KEYS[k], resTTL)
    end
    a, k = a + 2, k + 1
  elseif op == 'D' then
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[1], 'id', ARGV[a + 1])
    a = a + 2
  elseif op == 'X' then
    redis.call('HSET', KEYS[4], ARGV[a + 1], ARGV[a + 3])
    redis.call('ZADD', KEYS[5], now, ARGV[a + 1])
    if ARGV[5] ~= '0' then redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[1], 'id', ARGV[a + 1]) end
    a = a + 4
  elseif op == 'U' then
    redis.call('ZREM', KEYS[7], ARGV[a + 1])
    redis.call('HDEL', KEYS[9], ARGV[a + 1])
    a = a + 2
  elseif op == 'A' then
    local cnt = tonumber(ARGV[a + 1])
    redis.call('XDEL', KEYS[2], unpack(ARGV, a + 2, a + 1 + cnt))
    a = a + 2 + cnt
  elseif op == 'M' then
    local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    if head and head[1] == ARGV[a + 1] then
      redis.call('XTRIM', KEYS[2], 'MINID', ARGV[a + 2])
      a = a + 4 + tonumber(ARGV[a + 3])
    else
      a = a + 4
    end
  elseif op == 'O' then
    redis.call('XADD', KEYS[3], '*', 'b', ARGV[a + 1])
    a = a + 2
  elseif op == 'T' then
    redis.call('LTRIM', KEYS[k], tonumber(ARGV[a + 1]), -1)
    a, k = a + 2, k + 1
  elseif op == 'F' or op == 'B' then
    if op == 'F' then redis.call('LPUSH', KEYS[k], ARGV[a + 1]) else redis.call('RPUSH', KEYS[k], ARGV[a + 1]) end
    redis.call('HSET', KEYS[9], ARGV[a + 1], ARGV[a + 2])
    a, k = a + 3, k + 1
  elseif op == 'P' then
    redis.call('ZADD', KEYS[7], ARGV[a + 3], ARGV[a + 2])
    redis.call('HSET', KEYS[9], ARGV[a + 2], ARGV[a + 4])
    redis.call('HSET', KEYS[8], ARGV[a + 1], ARGV[a + 2])
    a = a + 5
  elseif op == 'N' then
    local nxt = redis.call('LPOP', KEYS[k])
    if nxt then
      redis.call('ZADD', KEYS[7], now, nxt)
      redis.call('HSET', KEYS[8], ARGV[a + 1], nxt)
    else
      redis.call('HDEL', KEYS[8], ARGV[a + 1])
    end
    a, k = a + 2, k + 1
  else
    return redis.error_reply('BADOP ' .. tostring(op))
  end
end
if #mset > 0 then redis.call('MSET', unpack(mset)) end
redis.call('SET', KEYS[10], ARGV[1] .. ' ' .. (commits + 1))
return commits + 1
`)

// ackChunk is how many stream ids one XDEL in the commit script takes.
const ackChunk = 500

// packEmits packs a batch's emitted jobs into one outbox field: each job
// packed as for a stream entry (packJob), after its uvarint length. One
// value to add, log and read back, however many jobs the batch emitted.
func packEmits(emits []Job) []byte {
	var b []byte
	for i := range emits {
		j := packJob(&emits[i])
		b = binary.AppendUvarint(b, uint64(len(j)))
		b = append(b, j...)
	}
	return b
}

// StateWrite replaces an entity's state.
type StateWrite struct {
	Entity EntityRef
	Value  []byte
}

// Result is a job's result, kept in its record for the longer of
// ResultRetention and DoneRetention.
type Result struct {
	JobID string
	Value []byte
}

// DeadJob is a job that exhausted its attempts or failed for good. Its
// Job.Errors is the error history, the last one included.
type DeadJob struct {
	Job   Job
	Error string
}

// KeyPlan is what a batch does to a key's hold. A key is held while a job
// of it waits for a retry; later jobs of the key wait behind it in order.
type KeyPlan struct {
	Key  string
	Trim int  // waiting jobs the batch read from the front of the list
	Park *Job // the job that holds the key from now on (NotBefore set)
	// Next is set when the key's parked job finished in this batch and no
	// job of it was parked: the next waiting job is parked as due, or the
	// hold is lifted when none waits.
	Next  bool
	Front []Job // jobs to wait right behind Park, in order
	Back  []Job // jobs to wait at the end of the list, in order
}

// Batch is everything one partition batch commits.
type Batch struct {
	Done []string // job ids applied
	// Acked are the stream ids to remove from the queue: every job read,
	// in stream order, with none of the stream between them left out (as
	// one read returns them).
	Acked   []string
	States  []StateWrite
	Results []Result
	Emits   []Job     // follow-up jobs for the outbox (ids already derived)
	Dead    []DeadJob // jobs moved to the dead-letter store
	// Unparked lists the jobs in Done or Dead, or dropped as duplicates,
	// that were parked or waiting behind a hold rather than read from the
	// stream: only they have a parked entry and a body to drop.
	Unparked []string
	Keys     []KeyPlan // holds taken, moved or lifted
	// Attempts is the attempt count of each job in Done, for GetResult.
	Attempts map[string]int
	// Retries lists the jobs parked for another attempt (a view of Keys
	// for logs and metrics).
	Retries []Job
	// Guard, for a job that never was in the queue (a direct call), makes
	// the commit check first that it may still skip the queue.
	Guard *Guard
}

// DeadRecord is a dead letter as stored.
type DeadRecord struct {
	ID        string   `json:"id"`
	Handler   string   `json:"handler"`
	Key       string   `json:"key"`
	Payload   []byte   `json:"payload"`
	Attempts  int      `json:"attempts"`
	Errors    []string `json:"errors"`
	DeadAtMs  int64    `json:"dead_at_ms"`
	Partition int      `json:"partition"`
	// Submitter overrides, kept so a replay runs the same job.
	MaxAttempts int   `json:"max_attempts,omitempty"`
	TimeoutMs   int64 `json:"timeout_ms,omitempty"`
}

// CommitBatch applies b to partition under grant. It returns an error
// wrapping lease.ErrFenced if grant is not the partition's current one
// (another worker has been granted it since, or Redis lost the grant), or ErrAlreadyFinished if a job in it was finished by an earlier
// commit; in both cases nothing was written.
func (s *Store) CommitBatch(ctx context.Context, partition int, grant lease.Grant, b *Batch) error {
	k := keys.For(partition)
	now := time.Now().UnixMilli()
	ks := []string{k.Epoch(), k.Queue(), k.Outbox(), k.Dead(), k.DeadIndex(), k.Audit(), k.Parked(), k.Holds(), k.Bodies(), k.Commits()}
	audit := "0"
	if s.cfg.Audit {
		audit = itoa(s.cfg.AuditMax)
	}
	seen := s.commits.seen(partition, grant)
	args := []any{grant.String(), itoa(now), int64(s.cfg.DoneRetention.Seconds()), int64(s.cfg.ResultRetention.Seconds()), audit, seen}
	if g := b.Guard; g != nil {
		has := "0"
		if g.HasState {
			has = "1"
		}
		ks = append(ks, k.State(g.Entity.Type, g.Entity.Key), k.Job(g.ID), k.Delayed())
		args = append(args, "G", g.Entity.Key, directLookahead, has, g.State, g.Hash)
	}
	emitted := emitCounts(b.Emits)
	for _, id := range b.Done {
		ks = append(ks, k.Job(id))
		args = append(args, "C", id, statusDone, max(b.Attempts[id], 1), emitted[id])
	}
	for _, d := range b.Dead {
		ks = append(ks, k.Job(d.Job.ID))
		args = append(args, "C", d.Job.ID, statusDead, max(d.Job.Attempt, 1), 0)
	}
	if s.cfg.Audit {
		for _, id := range b.Done {
			args = append(args, "D", id)
		}
	}
	for _, d := range b.Dead {
		rec, _ := json.Marshal(DeadRecord{ID: d.Job.ID, Handler: d.Job.Handler, Key: d.Job.Key, Payload: d.Job.Payload,
			Attempts: d.Job.Attempt, Errors: d.Job.Errors, DeadAtMs: now, Partition: partition,
			MaxAttempts: d.Job.MaxAttempts, TimeoutMs: d.Job.TimeoutMs})
		args = append(args, "X", d.Job.ID, d.Job.Attempt, rec)
	}
	for _, id := range b.Unparked {
		args = append(args, "U", id)
	}
	for _, w := range b.States {
		ks = append(ks, k.State(w.Entity.Type, w.Entity.Key))
		args = append(args, "S", w.Value)
	}
	for _, r := range b.Results {
		ks = append(ks, k.Job(r.JobID))
		args = append(args, "R", r.Value)
	}
	// The acked entries were read in one go from where the last commit
	// under this epoch left the stream, so they are its head: one XTRIM
	// MINID drops them for a fraction of what deleting each one costs. The
	// script checks that the first is still the head; if not, one XDEL per
	// chunk, small enough for Lua's unpack, does it instead.
	if min, ok := afterID(b.Acked); ok {
		chunks := (len(b.Acked) + ackChunk - 1) / ackChunk
		args = append(args, "M", b.Acked[0], min, len(b.Acked)+2*chunks)
	}
	for i := 0; i < len(b.Acked); i += ackChunk {
		chunk := b.Acked[i:min(i+ackChunk, len(b.Acked))]
		args = append(args, "A", len(chunk))
		for _, id := range chunk {
			args = append(args, id)
		}
	}
	if len(b.Emits) > 0 {
		for i := range b.Emits {
			b.Emits[i].SubmittedAt, b.Emits[i].Attempt = now, 1
		}
		args = append(args, "O", packEmits(b.Emits))
	}
	for _, kp := range b.Keys {
		wl := k.Waiting(kp.Key)
		if kp.Trim > 0 {
			ks = append(ks, wl)
			args = append(args, "T", kp.Trim)
		}
		for i := len(kp.Front) - 1; i >= 0; i-- {
			ks = append(ks, wl)
			args = append(args, "F", kp.Front[i].ID, kp.Front[i].encode())
		}
		for i := range kp.Back {
			ks = append(ks, wl)
			args = append(args, "B", kp.Back[i].ID, kp.Back[i].encode())
		}
		switch {
		case kp.Park != nil:
			args = append(args, "P", kp.Key, kp.Park.ID, itoa(kp.Park.NotBefore), kp.Park.encode())
		case kp.Next:
			ks = append(ks, wl)
			args = append(args, "N", kp.Key)
		}
	}
	n, err := s.runScript(ctx, commitScript, ks, args...).Int64()
	if err == nil || errors.Is(err, ErrNotReplicated) {
		s.commits.saw(partition, grant, n)
	}
	if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
		return fmt.Errorf("store: commit partition %d: %w (%s)", partition, ErrBusy, err.Error())
	}
	if err != nil && strings.HasPrefix(err.Error(), "ALREADY") {
		return fmt.Errorf("store: commit partition %d: %w: %s", partition, ErrAlreadyFinished, strings.TrimPrefix(err.Error(), "ALREADY "))
	}
	if err != nil && strings.HasPrefix(err.Error(), "FENCED") {
		return fmt.Errorf("store: commit partition %d under grant %v: %w (%s)", partition, grant, lease.ErrFenced, err.Error())
	}
	if err != nil && strings.HasPrefix(err.Error(), "LOST") {
		return fmt.Errorf("store: commit partition %d under grant %v: %w: %w: Redis has %s of the %d commits acknowledged under it",
			partition, grant, lease.ErrFenced, ErrLostCommits, strings.TrimPrefix(err.Error(), "LOST "), seen)
	}
	if err != nil {
		return fmt.Errorf("store: commit partition %d: %w", partition, err)
	}
	return nil
}

// emitCounts is how many jobs each parent emitted, by parent id: what its
// record keeps, so the status of an emitted job not relayed yet is known.
func emitCounts(emits []Job) map[string]int {
	if len(emits) == 0 {
		return nil
	}
	n := map[string]int{}
	for _, e := range emits {
		if parent, i, ok := ParentID(e.ID); ok {
			n[parent] = max(n[parent], i+1)
		}
	}
	return n
}

// afterID is the stream id right after the last of ids, if ids are in
// increasing stream order.
func afterID(ids []string) (string, bool) {
	if len(ids) == 0 {
		return "", false
	}
	var prevMs, prevSeq uint64
	for i, id := range ids {
		msS, seqS, ok := strings.Cut(id, "-")
		ms, err1 := strconv.ParseUint(msS, 10, 64)
		seq, err2 := strconv.ParseUint(seqS, 10, 64)
		if !ok || err1 != nil || err2 != nil || seq == ^uint64(0) {
			return "", false
		}
		if i > 0 && (ms < prevMs || ms == prevMs && seq <= prevSeq) {
			return "", false
		}
		prevMs, prevSeq = ms, seq
	}
	return strconv.FormatUint(prevMs, 10) + "-" + strconv.FormatUint(prevSeq+1, 10), true
}
