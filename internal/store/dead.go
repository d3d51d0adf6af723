package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// replayScript moves a dead letter back to its partition's stream with a
// fresh attempt count. The job counts as submitted now for its key's order.
//
// KEYS[1] job record, KEYS[2] stream, KEYS[3] dead letters, KEYS[4] dead index
// ARGV[1] id, ARGV[2] content hash, ARGV[3..] stream entry fields
// Returns 1 if replayed, 0 if no such dead letter.
var replayScript = redis.NewScript(`
local sp = redis.call('GET', KEYS[5])
if sp and string.sub(sp, 1, 1) ~= 'd' then return redis.error_reply('MOVING ' .. sp) end
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1
`)

// DeadLetters reads dead letters by id, searching every partition (an id
// does not name its key). Missing ids are left out.
func (s *Store) DeadLetters(ctx context.Context, ids []string) ([]DeadRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, s.partitionCount())
	for p := range cmds {
		cmds[p] = pipe.HMGet(ctx, keys.For(p).Dead(), ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read dead letters: %w", err)
	}
	byID := map[string]DeadRecord{}
	for _, c := range cmds {
		for _, v := range c.Val() {
			if str, ok := v.(string); ok {
				var r DeadRecord
				if err := json.Unmarshal([]byte(str), &r); err == nil {
					byID[r.ID] = r
				}
			}
		}
	}
	out := make([]DeadRecord, 0, len(byID))
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			out = append(out, r)
			delete(byID, id)
		}
	}
	return out, nil
}

// ListDead pages through the dead letters of every partition in the order
// they were dead-lettered, oldest first (ties by id). after is the cursor a
// previous call returned ("" to start); the returned cursor is "" at the
// end. A page costs two reads per partition, pipelined, and one per
// partition it holds letters of.
func (s *Store) ListDead(ctx context.Context, limit int, after string) ([]DeadRecord, string, error) {
	if limit <= 0 {
		return nil, "", nil
	}
	var fromMs int64
	var fromID string
	if after != "" {
		ms, id, ok := strings.Cut(after, ":")
		var err error
		fromMs, err = strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || id == "" {
			return nil, "", fmt.Errorf("store: bad dead-letter cursor %q", after)
		}
		fromID = id
	}
	type entry struct {
		p  int
		ms int64
		id string
	}
	pipe := s.rdb.Pipeline()
	later := make([]*redis.ZSliceCmd, s.partitionCount())
	ties := make([]*redis.ZSliceCmd, s.partitionCount())
	for p := range later {
		k := keys.For(p).DeadIndex()
		min := "-inf"
		if after != "" {
			min = "(" + itoa(fromMs)
			// Letters of the cursor's own millisecond, past its id.
			ties[p] = pipe.ZRangeByScoreWithScores(ctx, k, &redis.ZRangeBy{Min: itoa(fromMs), Max: itoa(fromMs)})
		}
		later[p] = pipe.ZRangeByScoreWithScores(ctx, k, &redis.ZRangeBy{Min: min, Max: "+inf", Count: int64(limit) + 1})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("store: list dead letters: %w", err)
	}
	var found []entry
	for p := range later {
		if ties[p] != nil {
			for _, z := range ties[p].Val() {
				if id, _ := z.Member.(string); id > fromID {
					found = append(found, entry{p, fromMs, id})
				}
			}
		}
		for _, z := range later[p].Val() {
			id, _ := z.Member.(string)
			found = append(found, entry{p, int64(z.Score), id})
		}
	}
	slices.SortFunc(found, func(a, b entry) int {
		if c := cmp.Compare(a.ms, b.ms); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	next := ""
	if len(found) > limit {
		found = found[:limit]
		last := found[limit-1]
		next = fmt.Sprintf("%d:%s", last.ms, last.id)
	}
	byPart := map[int][]string{}
	for _, e := range found {
		byPart[e.p] = append(byPart[e.p], e.id)
	}
	pipe = s.rdb.Pipeline()
	reads := make(map[int]*redis.SliceCmd, len(byPart))
	for p, ids := range byPart {
		reads[p] = pipe.HMGet(ctx, keys.For(p).Dead(), ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("store: read dead letters: %w", err)
	}
	recs := map[string]DeadRecord{}
	for _, c := range reads {
		for _, v := range c.Val() {
			if str, ok := v.(string); ok {
				var r DeadRecord
				if err := json.Unmarshal([]byte(str), &r); err == nil {
					recs[r.ID] = r
				}
			}
		}
	}
	out := make([]DeadRecord, 0, len(found))
	for _, e := range found {
		if r, ok := recs[e.id]; ok { // gone: replayed or purged meanwhile
			out = append(out, r)
		}
	}
	return out, next, nil
}

// AllDead returns the id of every dead letter.
func (s *Store) AllDead(ctx context.Context) ([]string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, s.partitionCount())
	for p := range cmds {
		cmds[p] = pipe.ZRange(ctx, keys.For(p).DeadIndex(), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: list dead letters: %w", err)
	}
	var ids []string
	for _, c := range cmds {
		ids = append(ids, c.Val()...)
	}
	return ids, nil
}

// ReplayDead submits dead letters again with fresh attempts and returns how
// many it replayed.
func (s *Store) ReplayDead(ctx context.Context, ids []string) (int, error) {
	recs, err := s.DeadLetters(ctx, ids)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	routes := s.routes()
	now := time.Now().UnixMilli()
	moved := 0
	here := recs[:0:0]
	for _, r := range recs {
		if p := routes.PartitionOf(r.Key); p != r.Partition && (routes.Resharding() || routes.Prev > 0) {
			n, err := s.replayMoved(ctx, r, p, routes.Modulus(p), now)
			if err != nil {
				return moved, err
			}
			moved += n
			continue
		}
		here = append(here, r)
	}
	recs = here
	if len(recs) == 0 {
		return moved, nil
	}
	cmds, err := s.evalPipelined(ctx, []*redis.Script{replayScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(recs))
		for i, r := range recs {
			k := keys.For(r.Partition)
			j := Job{ID: r.ID, Handler: r.Handler, Key: r.Key, Payload: r.Payload, Attempt: 1, SubmittedAt: now,
				MaxAttempts: r.MaxAttempts, TimeoutMs: r.TimeoutMs, Partition: r.Partition}
			args := append([]any{j.ID, j.ContentHash()}, j.streamFields()...)
			cmds[i] = replayScript.EvalSha(ctx, pipe, []string{k.Job(j.ID), k.Queue(), k.Dead(), k.DeadIndex(), k.Split()}, args...)
		}
		return cmds
	})
	if err != nil {
		return 0, err
	}
	n := moved
	for i, c := range cmds {
		v, err := c.Int()
		if err != nil {
			return n, fmt.Errorf("store: replay %q: %w", recs[i].ID, movingErr(recs[i].Partition, err))
		}
		n += v
	}
	return n, nil
}

// replayMovedScript queues a dead letter's job again in the partition its
// key moved to by a reshard (the dead letter stays in the old one, which
// dropLetterScript then clears). A record of the id there with the same
// content is this replay done before (a replay that stopped between the
// two steps): nothing is queued twice.
//
// KEYS[1] job record, KEYS[2] stream, KEYS[3] split mark. ARGV[1] the
// partition count the key was routed by, ARGV[2] content hash, ARGV[3..]
// stream entry fields. Returns 1 if queued, 0 if queued before, -1 if the
// id is taken there by other content.
var replayMovedScript = redis.NewScript(splitCheckLua + `
local moving = splitCheck(KEYS[3], ARGV[1])
if moving then return moving end
local h = redis.call('HGET', KEYS[1], 'h')
if h then
  if h == ARGV[2] then return 0 end
  return -1
end
redis.call('HSET', KEYS[1], 'h', ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1
`)

// dropLetterScript removes a dead letter replayed into another partition,
// and its record, whose status would say dead. KEYS[1] dead letters,
// KEYS[2] dead index, KEYS[3] job record; ARGV[1] id. Returns 1 if the
// dead letter was there.
var dropLetterScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
`)

// replayMoved replays dead letter r, in partition r.Partition, into
// partition p where its key went by a reshard, routed by modulus: the job
// is queued in p first, then the dead letter dropped, so a replay that
// stops between the two leaves the letter and, sent again, queues
// nothing twice. It returns 1 if it replayed the letter.
func (s *Store) replayMoved(ctx context.Context, r DeadRecord, p, modulus int, now int64) (int, error) {
	j := Job{ID: r.ID, Handler: r.Handler, Key: r.Key, Payload: r.Payload, Attempt: 1, SubmittedAt: now,
		MaxAttempts: r.MaxAttempts, TimeoutMs: r.TimeoutMs, Partition: p}
	k := keys.For(p)
	args := append([]any{modulus, j.ContentHash()}, j.streamFields()...)
	v, err := s.runScript(ctx, replayMovedScript, []string{k.Job(j.ID), k.Queue(), k.Split()}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("store: replay %q into partition %d: %w", r.ID, p, movingErr(p, err))
	}
	if v < 0 {
		return 0, fmt.Errorf("store: replay %q into partition %d: %w", r.ID, p, ErrConflict)
	}
	old := keys.For(r.Partition)
	n, err := s.runScript(ctx, dropLetterScript, []string{old.Dead(), old.DeadIndex(), old.Job(r.ID)}, r.ID).Int()
	if err != nil {
		return 0, fmt.Errorf("store: replay %q: queued in partition %d, but its dead letter stays in %d (replay it again to drop it): %w", r.ID, p, r.Partition, err)
	}
	return n, nil
}

// PurgeDead deletes dead letters for good and returns how many it deleted.
func (s *Store) PurgeDead(ctx context.Context, ids []string) (int, error) {
	recs, err := s.DeadLetters(ctx, ids)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(recs))
	for i, r := range recs {
		k := keys.For(r.Partition)
		cmds[i] = pipe.HDel(ctx, k.Dead(), r.ID)
		pipe.ZRem(ctx, k.DeadIndex(), r.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("store: purge dead letters: %w", err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}

// JobStatus is what is known about a job id.
type JobStatus struct {
	ID       string
	Known    bool
	Finished bool
	Dead     bool
	Rejected bool // finished: its handler refused it
	Attempts int
	Result   []byte // nil if none or expired
	Error    string // last error, for dead jobs; the reason, for rejected ones

	// Cancelled: finished by a cancel; Attempts are those made before it,
	// Error its last error, if one failed.
	Cancelled bool
}

// StatusesIn reads the status and result of jobs by id: partitions[i] is
// the partition of ids[i], or -1 to ask every partition (an id does not
// name its key); nil partitions asks every partition for every id. One
// pipeline in all.
func (s *Store) StatusesIn(ctx context.Context, ids []string, partitions []int) ([]JobStatus, error) {
	pipe := s.rdb.Pipeline()
	P := s.partitionCount()
	cmds := make([]*redis.MapStringStringCmd, len(ids)*P)
	for i, id := range ids {
		for p := 0; p < P; p++ {
			if partitions != nil && partitions[i] >= 0 && partitions[i] != p {
				continue
			}
			cmds[i*P+p] = pipe.HGetAll(ctx, keys.For(p).Job(id))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read job status: %w", err)
	}
	out := make([]JobStatus, len(ids))
	var dead []string
	for i, id := range ids {
		st := JobStatus{ID: id}
		for p := 0; p < P; p++ {
			c := cmds[i*P+p]
			if c == nil {
				continue
			}
			rec := c.Val()
			if len(rec) == 0 {
				continue
			}
			st.Known = true
			unpackRecord(rec)
			st.Attempts, _ = strconv.Atoi(rec["a"])
			switch rec["s"] {
			case statusDone:
				st.Finished = true
			case statusDead:
				st.Finished, st.Dead = true, true
				dead = append(dead, id)
			case statusRejected:
				st.Finished, st.Rejected, st.Error = true, true, rec["m"]
			case statusCancelled:
				st.Finished, st.Cancelled, st.Error = true, true, rec["m"]
			}
			if _, ok := rec["a"]; st.Finished && !ok {
				st.Attempts = 1 // the commit records attempts only past the first
			}
			if r, ok := rec["r"]; ok {
				st.Result = []byte(r)
			}
			break
		}
		out[i] = st
	}
	if err := s.emittedStatuses(ctx, out); err != nil {
		return nil, err
	}
	if len(dead) > 0 {
		recs, err := s.DeadLetters(ctx, dead)
		if err != nil {
			return nil, err
		}
		byID := map[string]DeadRecord{}
		for _, r := range recs {
			byID[r.ID] = r
		}
		for i := range out {
			if r, ok := byID[out[i].ID]; ok && len(r.Errors) > 0 {
				out[i].Error = r.Errors[len(r.Errors)-1]
			}
		}
	}
	return out, nil
}

// trimDeadScript drops a partition's dead letters that died before a
// time, then the oldest past the cap, at most a limit of each per call.
//
// KEYS[1] dead letters, KEYS[2] dead index.
// ARGV[1] died before (unix ms), ARGV[2] cap, ARGV[3] limit.
// Returns {dropped for age, dropped for the cap}.
var trimDeadScript = redis.NewScript(`
local function drop(ids)
  if #ids > 0 then
    redis.call('HDEL', KEYS[1], unpack(ids))
    redis.call('ZREM', KEYS[2], unpack(ids))
  end
  return #ids
end
local limit = tonumber(ARGV[3])
local old = drop(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit))
local over = math.min(redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[2]), limit)
local capped = 0
if over > 0 then capped = drop(redis.call('ZRANGE', KEYS[2], 0, over - 1)) end
return {old, capped}
`)

// trimDeadLimit bounds what one trim call drops, so a partition with a
// large backlog does not hold Redis for long; the rest goes in the calls
// that follow.
const trimDeadLimit = 1000

// DeadTrim is what TrimDead dropped in one partition.
type DeadTrim struct {
	Expired int // older than the retention
	Capped  int // past the cap
}

// TrimDead drops the dead letters of partitions that died more than the
// retention before now, then the oldest past the cap, and returns how many
// per partition. The dead index orders them by death, so this costs
// O(log n) per letter dropped and almost nothing when none is due.
func (s *Store) TrimDead(ctx context.Context, partitions []int, now time.Time) (map[int]DeadTrim, error) {
	before := itoa(now.Add(-s.cfg.DeadRetention).UnixMilli())
	out := make(map[int]DeadTrim, len(partitions))
	for len(partitions) > 0 {
		cmds, err := s.evalPipelined(ctx, []*redis.Script{trimDeadScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(partitions))
			for i, p := range partitions {
				k := keys.For(p)
				cmds[i] = trimDeadScript.EvalSha(ctx, pipe, []string{k.Dead(), k.DeadIndex()}, before, s.cfg.DeadMax, trimDeadLimit)
			}
			return cmds
		})
		if err != nil {
			return out, err
		}
		var more []int
		for i, c := range cmds {
			v, err := c.Int64Slice()
			if err == nil && len(v) != 2 {
				err = fmt.Errorf("unexpected reply %v", v)
			}
			if err != nil {
				return out, fmt.Errorf("store: trim dead letters of partition %d: %w", partitions[i], err)
			}
			t := out[partitions[i]]
			t.Expired += int(v[0])
			t.Capped += int(v[1])
			out[partitions[i]] = t
			if v[0] == trimDeadLimit || v[1] == trimDeadLimit {
				more = append(more, partitions[i])
			}
		}
		partitions = more
	}
	return out, nil
}

// Done reports, per id, whether its job committed as done in partition
// partitions[i]: one field of each job record, in one pipeline. It is the
// cheap check of a poller that knows where its jobs are; Statuses says
// more.
func (s *Store) Done(ctx context.Context, ids []string, partitions []int) ([]bool, error) {
	if len(ids) != len(partitions) {
		return nil, fmt.Errorf("store: done: %d ids but %d partitions", len(ids), len(partitions))
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, keys.For(partitions[i]).Job(id), "s")
	}
	pipe.Exec(ctx) // each command's error is checked below
	out := make([]bool, len(ids))
	for i, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("store: read job status: %w", err)
		}
		out[i] = recordStatus(c.Val()) == statusDone
	}
	return out, nil
}
