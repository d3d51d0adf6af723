package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/routing"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// ErrSplitting means a partition refused a commit: its split has copied
// what it holds to its children, and it runs nothing until the split ends.
var ErrSplitting = errors.New("partition is being split")

// ErrMoving means a partition refused jobs because it is being split
// (frozen: try again shortly) or was split since the caller last looked
// (read the layout again and route the jobs anew). The jobs were not
// enqueued.
var ErrMoving = errors.New("partition is moving")

// MovingError is ErrMoving for one partition.
type MovingError struct {
	Partition int
	Frozen    bool // being split now; false: split already, route again
}

func (e *MovingError) Error() string {
	if e.Frozen {
		return fmt.Sprintf("partition %d is being split; try again shortly", e.Partition)
	}
	return fmt.Sprintf("partition %d was split; route the jobs again", e.Partition)
}

func (e *MovingError) Unwrap() error { return ErrMoving }

// movingErr turns a script's "MOVING f256" or "MOVING d256" into a
// MovingError; other errors come back as they are.
func movingErr(p int, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "MOVING "); ok {
		return &MovingError{Partition: p, Frozen: !strings.HasPrefix(rest, "d")}
	}
	return err
}

// splitCheckLua refuses a write of jobs routed by modulus (ARGV) into a
// partition whose split mark (key) says it is frozen, or was split to
// another count than the one the caller routed by.
const splitCheckLua = `
local function splitCheck(mark, modulus)
  local sp = redis.call('GET', mark)
  if sp and (string.sub(sp, 1, 1) ~= 'd' or string.sub(sp, 2) ~= modulus) then
    return redis.error_reply('MOVING ' .. sp)
  end
  return nil
end
`

// Routing is the layout the store routes by: a static one of cfg.Partitions
// unless the worker set a table.
func (s *Store) routes() *routing.View {
	if s.cfg.Routing != nil {
		return s.cfg.Routing.Load()
	}
	return &routing.View{P: s.cfg.Partitions}
}

// partitionCount is how many partitions exist now: lists walk them all.
func (s *Store) partitionCount() int { return s.routes().Partitions() }

// Layout reads the cluster's partition layout from corral:meta: P, a
// reshard under way and which partitions it has split, and the last
// reshard's end (for lookups of records left in a parent).
func (s *Store) Layout(ctx context.Context) (routing.View, error) {
	m, err := s.rdb.HGetAll(ctx, keys.Meta).Result()
	if err != nil {
		return routing.View{}, fmt.Errorf("store: read the partition layout: %w", err)
	}
	return parseLayout(m)
}

func parseLayout(m map[string]string) (routing.View, error) {
	var v routing.View
	num := func(f string) int64 {
		n, _ := strconv.ParseInt(m[f], 10, 64)
		return n
	}
	v.P = int(num("partitions"))
	if v.P < 1 {
		return v, fmt.Errorf("store: corral:meta has no partition count")
	}
	v.N = int(num("reshard_to"))
	v.Ready = m["indexed"] == "1"
	v.Prev, v.PriorUntil = int(num("reshard_prev")), num("prior_until")
	if v.N > v.P {
		v.Done = make([]bool, v.P)
		for f := range m {
			if rest, ok := strings.CutPrefix(f, "s:"); ok {
				if p, err := strconv.Atoi(rest); err == nil && p >= 0 && p < v.P {
					v.Done[p] = true
				}
			}
		}
	} else {
		v.N = 0
	}
	return v, nil
}

// startReshardScript records a reshard to ARGV[1] partitions, unless one to
// another count is under way. Returns the partition count before.
var startReshardScript = redis.NewScript(`
local p = tonumber(redis.call('HGET', KEYS[1], 'partitions'))
if not p then return redis.error_reply('ERR no partition count in corral:meta') end
local cur = redis.call('HGET', KEYS[1], 'reshard_to')
if cur then
  if cur == ARGV[1] then return p end
  return redis.error_reply('BUSY a reshard to ' .. cur .. ' partitions is under way')
end
local n = tonumber(ARGV[1])
if n == p then return p end
local window = tonumber(redis.call('HGET', KEYS[1], 'prior_until') or '0')
if window > tonumber(ARGV[2]) then
  return redis.error_reply('WINDOW ' .. window)
end
if n < p or n % p ~= 0 then
  return redis.error_reply('ERR the new partition count must be a multiple of ' .. p)
end
redis.call('HSET', KEYS[1], 'reshard_to', ARGV[1], 'split_done', 0, 'reshard_started', ARGV[2], 'resharded', 1)
return p
`)

// ErrReshardBusy means another reshard is under way.
var ErrReshardBusy = errors.New("another reshard is under way")

// ErrReshardTooSoon means the last reshard ended within the dedup window:
// jobs are still looked up in their keys' old partitions.
var ErrReshardTooSoon = errors.New("too soon after the last reshard")

// StartReshard records a reshard to n partitions (a multiple of P) and
// returns P. Asking again for the same n is a no-op; for another n while
// one is under way it is ErrReshardBusy, and within the dedup window after
// the last one ended (while jobs are still looked up in their keys' old
// partitions) ErrReshardTooSoon; n == P does nothing.
func (s *Store) StartReshard(ctx context.Context, n int) (int, error) {
	if n < 1 || n > sharding.MaxPartitions {
		return 0, fmt.Errorf("store: reshard: %d partitions is out of range (1 to %d)", n, sharding.MaxPartitions)
	}
	p, err := startReshardScript.Run(ctx, s.rdb, []string{keys.Meta}, n, time.Now().UnixMilli()).Int()
	if err != nil {
		if strings.HasPrefix(err.Error(), "BUSY") {
			return 0, fmt.Errorf("%w: %s", ErrReshardBusy, strings.TrimPrefix(err.Error(), "BUSY "))
		}
		if ms, ok := strings.CutPrefix(err.Error(), "WINDOW "); ok {
			until, _ := strconv.ParseInt(ms, 10, 64)
			return 0, fmt.Errorf("%w: jobs finished before it are looked up in their keys' old partitions until %s (the dedup window after it ended), and a second reshard before then would lose track of them", ErrReshardTooSoon, time.UnixMilli(until).UTC().Format(time.RFC3339))
		}
		return 0, fmt.Errorf("store: reshard: %w", err)
	}
	return p, nil
}

// splitDoneScript notes in corral:meta that partition ARGV[2] is split to
// ARGV[1]; the last one ends the reshard: P becomes N, and the old P is
// kept with the time until which records left in parents matter.
// Returns 0 if no such reshard is under way, 1 noted, 2 the reshard ended.
var splitDoneScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'reshard_to') ~= ARGV[1] then return 0 end
local n
if redis.call('HSETNX', KEYS[1], 's:' .. ARGV[2], 1) == 1 then
  n = redis.call('HINCRBY', KEYS[1], 'split_done', 1)
else
  n = tonumber(redis.call('HGET', KEYS[1], 'split_done'))
end
local p = tonumber(redis.call('HGET', KEYS[1], 'partitions'))
if n < p then return 1 end
for i = 0, p - 1 do redis.call('HDEL', KEYS[1], 's:' .. i) end
redis.call('HDEL', KEYS[1], 'reshard_to', 'split_done')
redis.call('HSET', KEYS[1], 'partitions', ARGV[1], 'reshard_prev', p, 'prior_until', ARGV[3], 'reshard_ended', ARGV[4])
return 2
`)

// NoteSplitDone records that old partition p is split to n partitions;
// ended is true when it was the last one (P is n from now on).
func (s *Store) NoteSplitDone(ctx context.Context, p, n int) (ended bool, err error) {
	now := time.Now()
	until := now.Add(max(s.cfg.DoneRetention, s.cfg.ResultRetention)).UnixMilli()
	r, err := splitDoneScript.Run(ctx, s.rdb, []string{keys.Meta}, n, p, until, now.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("store: note partition %d split: %w", p, err)
	}
	return r == 2, nil
}

// freezeScript freezes a partition for its split, under the owner's
// grant. Returns "done" if it is split to ARGV[2] already, else "frozen".
var freezeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(redis.call('GET', KEYS[1])))
end
local sp = redis.call('GET', KEYS[2])
if sp == 'd' .. ARGV[2] then return 'done' end
if sp == 'c' .. ARGV[2] then return 'copied' end
redis.call('SET', KEYS[2], 'f' .. ARGV[2])
return 'frozen'
`)

// FreezeForSplit marks partition p frozen for its split to n partitions:
// its enqueue and relay scripts refuse jobs from then. done is true when
// p is split already.
func (s *Store) FreezeForSplit(ctx context.Context, p int, grant lease.Grant, n int) (done bool, err error) {
	k := keys.For(p)
	r, err := freezeScript.Run(ctx, s.rdb, []string{k.Epoch(), k.Split()}, grant.String(), n).Text()
	if err != nil {
		return false, fenceErr("freeze for split", p, grant, err)
	}
	return r == "done", nil
}

// splitMarkScript moves a partition's split mark on, under the owner's
// grant: to "c<N>" once its children have their copies (from then it
// commits nothing), to "d<N>" once it is split.
var splitMarkScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(redis.call('GET', KEYS[1])))
end
redis.call('SET', KEYS[2], ARGV[3] .. ARGV[2])
return 1
`)

// importClaimScript makes a child partition take copies from the grant
// ARGV[1] (epoch ARGV[2]) only: a splitter with an older grant is refused
// from then. Returns 0 when the child is live already (its copy ended).
var importClaimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == 'done' then return 0 end
if cur and cur ~= ARGV[1] then
  local e = tonumber(string.match(cur, '^(%d+)'))
  if e and e > tonumber(ARGV[2]) then return redis.error_reply('FENCED ' .. cur) end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// importDoneScript ends a child's import: no copy lands in it after.
var importDoneScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == 'done' then return 1 end
if cur ~= ARGV[1] then return redis.error_reply('FENCED ' .. tostring(cur)) end
redis.call('SET', KEYS[1], 'done')
return 1
`)

// copyScript applies writes to a child partition while its import token
// is the splitter's grant. KEYS[1] the token, then the keys written.
// ARGV[1] the grant, then per write: op, key number, and its arguments:
// S key value pttl (a state; pttl 0: none), Z key score member, H key
// field value, L key n values... (the list replaced), R key pttl n
// field value... (a record replaced), D key - (a key deleted), Q key
// packed (a queue entry appended).
var copyScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(redis.call('GET', KEYS[1])))
end
local a = 2
while a <= #ARGV do
  local op, key = ARGV[a], KEYS[tonumber(ARGV[a + 1])]
  if op == 'D' then
    redis.call('DEL', key)
    a = a + 3
  elseif op == 'Q' then
    redis.call('XADD', key, '*', 'j', ARGV[a + 2])
    a = a + 3
  elseif op == 'S' then
    if ARGV[a + 3] ~= '0' then
      redis.call('SET', key, ARGV[a + 2], 'PX', ARGV[a + 3])
    else
      redis.call('SET', key, ARGV[a + 2])
    end
    a = a + 4
  elseif op == 'Z' then
    redis.call('ZADD', key, ARGV[a + 2], ARGV[a + 3])
    a = a + 4
  elseif op == 'H' then
    redis.call('HSET', key, ARGV[a + 2], ARGV[a + 3])
    a = a + 4
  elseif op == 'L' then
    local n = tonumber(ARGV[a + 2])
    redis.call('DEL', key)
    for i = a + 3, a + 2 + n do redis.call('RPUSH', key, ARGV[i]) end
    a = a + 3 + n
  else
    local pttl, n = ARGV[a + 2], tonumber(ARGV[a + 3])
    redis.call('DEL', key)
    for i = a + 4, a + 3 + 2 * n, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
    if pttl ~= '0' then redis.call('PEXPIRE', key, pttl) end
    a = a + 4 + 2 * n
  end
end
return 1
`)

// dropScript removes from the parent what its split copied, under the
// owner's grant. KEYS[1] epoch, then the keys. ARGV[1] the grant, then per
// removal: op, key number, argument: D key - (delete), X key id (XDEL),
// Z key member (ZREM), H key field (HDEL).
var dropScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(redis.call('GET', KEYS[1])))
end
for a = 2, #ARGV, 3 do
  local op, key = ARGV[a], KEYS[tonumber(ARGV[a + 1])]
  if op == 'D' then
    redis.call('DEL', key)
  elseif op == 'X' then
    redis.call('XDEL', key, ARGV[a + 2])
  elseif op == 'Z' then
    redis.call('ZREM', key, ARGV[a + 2])
  else
    redis.call('HDEL', key, ARGV[a + 2])
  end
end
return 1
`)

// writes is one script call's keys and arguments, built op by op.
type writes struct {
	keys []string
	args []any
	at   map[string]int
	ops  int
}

func newWrites(first string, grant string) *writes {
	return &writes{keys: []string{first}, args: []any{grant}, at: map[string]int{first: 1}}
}

func (w *writes) key(k string) int {
	if n, ok := w.at[k]; ok {
		return n
	}
	w.keys = append(w.keys, k)
	w.at[k] = len(w.keys)
	return len(w.keys)
}

func (w *writes) add(op, key string, args ...any) {
	w.args = append(w.args, op, w.key(key))
	w.args = append(w.args, args...)
	w.ops++
}

// SplitStats is what one partition's split moved.
type SplitStats struct {
	Queued, States, Delayed, Parked, Waiting, Schedules, Records, Cancels int
	Children                                                              int // children written to (not live before)
}

// splitStop, set by tests only, stops SplitPartition after a phase
// ("copied", "dropped"), as a splitter that dies there would.
var splitStop string

var errSplitStopped = errors.New("store: split stopped (test)")

// splitChunk bounds the writes of one copy or drop script call.
const splitChunk = 256

// SplitPartition moves what partition p (frozen, and not being processed:
// no batch or direct call runs in it) holds for keys that now belong to
// its other children under n partitions: queued jobs (in stream order),
// entity states (with their index and expiry), delayed jobs, parked jobs
// with their holds and waiting lines, the records of those jobs, and
// schedules. Each child first takes p's grant as its import token, so a
// splitter with an older grant can no longer write to it, and is emptied
// of what an interrupted split left; each item is copied, then dropped
// from p, then the children go live and p is marked split. Run again
// after a crash (by p's next owner), it copies again what p still holds
// and skips the children that went live.
//
// What stays in p: the outbox (relayed by the new routing), finished
// records, the finished log, dead letters, topics and the audit. Readers
// look for those in a key's old partition too.
func (s *Store) SplitPartition(ctx context.Context, p int, grant lease.Grant, n int) (SplitStats, error) {
	var st SplitStats
	P := s.routes().P
	if n <= P || n%P != 0 {
		return st, fmt.Errorf("store: split partition %d: %d is not a multiple of %d", p, n, P)
	}
	k := keys.For(p)
	g := grant.String()
	live := map[int]bool{} // children whose import ended before
	for c := p + P; c < n; c += P {
		r, err := importClaimScript.Run(ctx, s.rdb, []string{keys.For(c).Import()}, g, grant.Epoch).Int()
		if err != nil {
			return st, fenceErr("claim a child's import", c, grant, err)
		}
		if r == 0 {
			live[c] = true
		} else {
			st.Children++
		}
	}
	// A child not live yet holds only what splits of p copied into it,
	// maybe by an older grant, or by this one before p ran again: stale
	// copies of jobs p has run since. It is emptied first, so it gets
	// exactly what p holds now.
	// Copied already (by an earlier run, maybe under an older grant): the
	// children have everything, and p may have dropped some of it since.
	mark, err := s.rdb.Get(ctx, k.Split()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return st, fmt.Errorf("store: split %d: read its mark: %w", p, err)
	}
	copied := mark == "c"+strconv.Itoa(n)
	for c := p + P; c < n; c += P {
		if !live[c] && !copied {
			if err := s.wipeChild(ctx, c, g); err != nil {
				return st, fenceErr("empty a child", c, grant, err)
			}
		}
	}
	copies := map[int][]*writes{}
	drops := []*writes{}
	target := func(c int) *writes {
		ws := copies[c]
		if len(ws) == 0 || ws[len(ws)-1].ops >= splitChunk {
			ws = append(ws, newWrites(keys.For(c).Import(), g))
			copies[c] = ws
		}
		return ws[len(ws)-1]
	}
	drop := func() *writes {
		if len(drops) == 0 || drops[len(drops)-1].ops >= splitChunk {
			drops = append(drops, newWrites(k.Epoch(), g))
		}
		return drops[len(drops)-1]
	}
	childOf := func(key string) int { return sharding.PartitionOf(key, n) }
	records := map[int][]string{} // child → ids whose record moves
	moved := map[string]int{}     // id → child, of every job that moves
	// Entity states.
	types, err := s.rdb.SMembers(ctx, keys.EntityTypes).Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: entity types: %w", p, err)
	}
	for _, typ := range types {
		members, err := s.rdb.ZRange(ctx, k.Entities(typ), 0, -1).Result()
		if err != nil {
			return st, fmt.Errorf("store: split %d: index of %s: %w", p, typ, err)
		}
		var moving []string
		for _, key := range members {
			if childOf(key) != p {
				moving = append(moving, key)
			}
		}
		for len(moving) > 0 {
			batch := moving[:min(len(moving), 1000)]
			moving = moving[len(batch):]
			pipe := s.rdb.Pipeline()
			vals := make([]*redis.StringCmd, len(batch))
			ttls := make([]*redis.DurationCmd, len(batch))
			exps := make([]*redis.FloatCmd, len(batch))
			for i, key := range batch {
				vals[i] = pipe.Get(ctx, k.State(typ, key))
				ttls[i] = pipe.PTTL(ctx, k.State(typ, key))
				exps[i] = pipe.ZScore(ctx, k.Expiring(), typ+"\x00"+key)
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return st, fmt.Errorf("store: split %d: read states: %w", p, err)
			}
			for i, key := range batch {
				c := childOf(key)
				d := drop()
				d.add("Z", k.Entities(typ), key)
				d.add("D", k.State(typ, key), "-")
				if exps[i].Err() == nil {
					d.add("Z", k.Expiring(), typ+"\x00"+key)
				}
				val, err := vals[i].Result()
				if errors.Is(err, redis.Nil) || live[c] {
					continue // expired meanwhile, or the child has it already
				}
				ttl := int64(0)
				if t := ttls[i].Val(); t > 0 {
					ttl = t.Milliseconds()
				}
				w := target(c)
				w.add("S", keys.For(c).State(typ, key), val, ttl)
				w.add("Z", keys.For(c).Entities(typ), 0, key)
				if exps[i].Err() == nil {
					w.add("Z", keys.For(c).Expiring(), int64(exps[i].Val()), typ+"\x00"+key)
				}
				st.States++
			}
		}
	}
	// Queued jobs, in stream order: each child's in the order p had them.
	queued, err := s.rdb.XRange(ctx, k.Queue(), "-", "+").Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: queue: %w", p, err)
	}
	for _, m := range queued {
		j := jobFromStream(p, m.ID, m.Values)
		packed, ok := m.Values["j"].(string)
		c := childOf(j.Key)
		if !ok || c == p {
			continue // an entry that cannot be read stays, for the owner to report
		}
		drop().add("X", k.Queue(), m.ID)
		moved[j.ID] = c
		if !live[c] {
			target(c).add("Q", keys.For(c).Queue(), packed)
			records[c] = append(records[c], j.ID)
			st.Queued++
		}
	}
	// Delayed jobs.
	delayed, err := s.rdb.ZRangeWithScores(ctx, k.Delayed(), 0, -1).Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: delayed jobs: %w", p, err)
	}
	if err := s.eachBody(ctx, p, delayed, func(id string, score float64, body, key string) {
		c := childOf(key)
		if c == p {
			return
		}
		d := drop()
		d.add("Z", k.Delayed(), id)
		d.add("H", k.Bodies(), id)
		moved[id] = c
		if !live[c] {
			w := target(c)
			w.add("Z", keys.For(c).Delayed(), int64(score), id)
			w.add("H", keys.For(c).Bodies(), id, body)
			records[c] = append(records[c], id)
			st.Delayed++
		}
	}); err != nil {
		return st, err
	}
	// Parked jobs: each holds its key, with the key's waiting line.
	parked, err := s.rdb.ZRangeWithScores(ctx, k.Parked(), 0, -1).Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: parked jobs: %w", p, err)
	}
	type heldKey struct {
		id, body, key string
		score         float64
		c             int
	}
	var held []heldKey
	if err := s.eachBody(ctx, p, parked, func(id string, score float64, body, key string) {
		if c := childOf(key); c != p {
			held = append(held, heldKey{id: id, body: body, key: key, score: score, c: c})
		}
	}); err != nil {
		return st, err
	}
	// Their waiting lines, then the lines' bodies: two round trips in all.
	lines := make([][]string, len(held))
	var bodies map[string]string
	if len(held) > 0 {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.StringSliceCmd, len(held))
		for i, h := range held {
			cmds[i] = pipe.LRange(ctx, k.Waiting(h.key), 0, -1)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return st, fmt.Errorf("store: split %d: waiting lines: %w", p, err)
		}
		var ids []string
		for i := range held {
			lines[i] = cmds[i].Val()
			ids = append(ids, lines[i]...)
		}
		if bodies, err = s.bodiesOf(ctx, p, ids); err != nil {
			return st, err
		}
	}
	for i, h := range held {
		wl := lines[i]
		d := drop()
		d.add("Z", k.Parked(), h.id)
		d.add("H", k.Bodies(), h.id)
		d.add("H", k.Holds(), h.key)
		d.add("D", k.Waiting(h.key), "-")
		moved[h.id] = h.c
		for _, w := range wl {
			d.add("H", k.Bodies(), w)
			moved[w] = h.c
		}
		if live[h.c] {
			continue
		}
		ck := keys.For(h.c)
		w := target(h.c)
		w.add("Z", ck.Parked(), int64(h.score), h.id)
		w.add("H", ck.Bodies(), h.id, h.body)
		w.add("H", ck.Holds(), h.key, h.id)
		if len(wl) > 0 {
			args := []any{len(wl)}
			for _, x := range wl {
				args = append(args, x)
			}
			w.add("L", ck.Waiting(h.key), args...)
			for _, x := range wl {
				if b, ok := bodies[x]; ok {
					w.add("H", ck.Bodies(), x, b)
				}
			}
		}
		records[h.c] = append(records[h.c], h.id)
		records[h.c] = append(records[h.c], wl...)
		st.Parked++
		st.Waiting += len(wl)
	}
	// The records of the jobs moved: they are not finished, so the child's
	// commit will finish them.
	for c, ids := range records {
		pipe := s.rdb.Pipeline()
		recs := make([]*redis.MapStringStringCmd, len(ids))
		ttls := make([]*redis.DurationCmd, len(ids))
		for i, id := range ids {
			recs[i] = pipe.HGetAll(ctx, k.Job(id))
			ttls[i] = pipe.PTTL(ctx, k.Job(id))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return st, fmt.Errorf("store: split %d: read records: %w", p, err)
		}
		for i, id := range ids {
			fields := recs[i].Val()
			drop().add("D", k.Job(id), "-")
			if len(fields) == 0 {
				continue
			}
			ttl := int64(0)
			if t := ttls[i].Val(); t > 0 {
				ttl = t.Milliseconds()
			}
			args := []any{ttl, len(fields)}
			for f, v := range fields {
				args = append(args, f, v)
			}
			target(c).add("R", keys.For(c).Job(id), args...)
			st.Records++
		}
	}
	// Cancels asked for jobs that move, with the time they were asked:
	// the child's owner applies them. A cancel asked from the freeze on is
	// refused here (see requestCancelsScript), so none is missed.
	cancels, err := s.rdb.ZRangeWithScores(ctx, k.Cancels(), 0, -1).Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: cancels: %w", p, err)
	}
	for _, z := range cancels {
		id, _ := z.Member.(string)
		c, ok := moved[id]
		if !ok {
			continue
		}
		drop().add("Z", k.Cancels(), id)
		if !live[c] {
			target(c).add("Z", keys.For(c).Cancels(), int64(z.Score), id)
			st.Cancels++
		}
	}
	// Schedules, by name.
	defs, err := s.rdb.HGetAll(ctx, k.Schedules()).Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: schedules: %w", p, err)
	}
	ticks, err := s.rdb.HGetAll(ctx, k.ScheduleTicks()).Result()
	if err != nil {
		return st, fmt.Errorf("store: split %d: schedule ticks: %w", p, err)
	}
	for name, def := range defs {
		c := childOf(name)
		if c == p {
			continue
		}
		d := drop()
		d.add("H", k.Schedules(), name)
		d.add("H", k.ScheduleTicks(), name)
		if live[c] {
			continue
		}
		w := target(c)
		w.add("H", keys.For(c).Schedules(), name, def)
		if t, ok := ticks[name]; ok {
			w.add("H", keys.For(c).ScheduleTicks(), name, t)
		}
		st.Schedules++
	}
	// Copy, then drop from p, then let the children go live.
	if !copied {
		for c, ws := range copies {
			if err := s.runWrites(ctx, copyScript, ws); err != nil {
				return st, fenceErr("copy into a child", c, grant, err)
			}
		}
		// From here the children hold the only complete copy of what moves:
		// p commits nothing more, and a split run again only drops.
		if err := splitMarkScript.Run(ctx, s.rdb, []string{k.Epoch(), k.Split()}, g, n, "c").Err(); err != nil {
			return st, fenceErr("mark copied", p, grant, err)
		}
	}
	if splitStop == "copied" {
		return st, errSplitStopped
	}
	if err := s.runWrites(ctx, dropScript, drops); err != nil {
		return st, fenceErr("drop what moved", p, grant, err)
	}
	if splitStop == "dropped" {
		return st, errSplitStopped
	}
	for c := p + P; c < n; c += P {
		if err := importDoneScript.Run(ctx, s.rdb, []string{keys.For(c).Import()}, g).Err(); err != nil {
			return st, fenceErr("end a child's import", c, grant, err)
		}
	}
	if err := splitMarkScript.Run(ctx, s.rdb, []string{k.Epoch(), k.Split()}, g, n, "d").Err(); err != nil {
		return st, fenceErr("mark split", p, grant, err)
	}
	if st.Schedules > 0 {
		s.schedulesChanged(ctx)
	}
	return st, nil
}

// eachBody calls fn with each member of a delayed or parked set of p, its
// score, its body and its key. A member without a body is skipped.
func (s *Store) eachBody(ctx context.Context, p int, zs []redis.Z, fn func(id string, score float64, body, key string)) error {
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i], _ = z.Member.(string)
	}
	bodies, err := s.bodiesOf(ctx, p, ids)
	if err != nil {
		return err
	}
	for i, id := range ids {
		body, ok := bodies[id]
		if !ok {
			continue
		}
		key, err := bodyKey(body)
		if err != nil {
			return fmt.Errorf("store: split %d: job %q: %w", p, id, err)
		}
		fn(id, zs[i].Score, body, key)
	}
	return nil
}

// bodiesOf reads the bodies of ids in partition p; ids without one are
// left out.
func (s *Store) bodiesOf(ctx context.Context, p int, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1000)]
		ids = ids[len(batch):]
		vals, err := s.rdb.HMGet(ctx, keys.For(p).Bodies(), batch...).Result()
		if err != nil {
			return nil, fmt.Errorf("store: split %d: job bodies: %w", p, err)
		}
		for i, v := range vals {
			if b, ok := v.(string); ok {
				out[batch[i]] = b
			}
		}
	}
	return out, nil
}

// bodyKey is the key of a job body: a packed stream entry (delayed jobs)
// or JSON (parked and waiting jobs).
func bodyKey(body string) (string, error) {
	if strings.HasPrefix(body, "{") {
		j, err := decodeJob(0, body)
		return j.Key, err
	}
	var j Job
	err := unpackJob([]byte(body), &j)
	return j.Key, err
}

// registerEntityType records that states of typ exist (see
// keys.EntityTypes).
func (s *Store) registerEntityType(ctx context.Context, typ string) error {
	if err := s.rdb.SAdd(ctx, keys.EntityTypes, typ).Err(); err != nil {
		return fmt.Errorf("store: register entity type %q: %w", typ, err)
	}
	return nil
}

// ReshardInfo is what corral:meta says of resharding.
type ReshardInfo struct {
	Partitions, To, Split, Previous int
	StartedMs, EndedMs              int64
}

// Reshard reads the state of the reshard under way, or of the last one.
func (s *Store) Reshard(ctx context.Context) (ReshardInfo, error) {
	m, err := s.rdb.HGetAll(ctx, keys.Meta).Result()
	if err != nil {
		return ReshardInfo{}, fmt.Errorf("store: read the reshard state: %w", err)
	}
	num := func(f string) int64 {
		n, _ := strconv.ParseInt(m[f], 10, 64)
		return n
	}
	return ReshardInfo{Partitions: int(num("partitions")), To: int(num("reshard_to")), Split: int(num("split_done")),
		Previous: int(num("reshard_prev")), StartedMs: num("reshard_started"), EndedMs: num("reshard_ended")}, nil
}

// HasRecord reports whether partition p holds a record of job id.
func (s *Store) HasRecord(ctx context.Context, p int, id string) (bool, error) {
	n, err := s.rdb.Exists(ctx, keys.For(p).Job(id)).Result()
	if err != nil {
		return false, fmt.Errorf("store: look for job %q in partition %d: %w", id, p, err)
	}
	return n > 0, nil
}

// runWrites runs script once per writes, pipelined: each call writes its
// own keys, so their order does not matter, and each can run twice.
func (s *Store) runWrites(ctx context.Context, script *redis.Script, ws []*writes) error {
	for len(ws) > 0 {
		batch := ws[:min(len(ws), 64)]
		ws = ws[len(batch):]
		cmds, err := s.evalPipelined(ctx, []*redis.Script{script}, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(batch))
			for i, w := range batch {
				cmds[i] = script.EvalSha(ctx, pipe, w.keys, w.args...)
			}
			return cmds
		})
		if err != nil {
			return err
		}
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// wipeChild deletes what copies wrote into child c (pending, so nothing
// else wrote there): its queue, its delayed and parked jobs with their bodies,
// records, holds and waiting lines, its states and their indexes, its
// schedules. Under the import token g.
func (s *Store) wipeChild(ctx context.Context, c int, g string) error {
	k := keys.For(c)
	types, err := s.rdb.SMembers(ctx, keys.EntityTypes).Result()
	if err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	delayed := pipe.ZRange(ctx, k.Delayed(), 0, -1)
	parked := pipe.ZRange(ctx, k.Parked(), 0, -1)
	holds := pipe.HKeys(ctx, k.Holds())
	idx := make([]*redis.StringSliceCmd, len(types))
	for i, typ := range types {
		idx[i] = pipe.ZRange(ctx, k.Entities(typ), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var ws []*writes
	del := func(key string) {
		if len(ws) == 0 || ws[len(ws)-1].ops >= splitChunk {
			ws = append(ws, newWrites(k.Import(), g))
		}
		ws[len(ws)-1].add("D", key, "-")
	}
	for _, id := range append(delayed.Val(), parked.Val()...) {
		del(k.Job(id))
	}
	for _, key := range holds.Val() {
		ids, err := s.rdb.LRange(ctx, k.Waiting(key), 0, -1).Result()
		if err != nil {
			return err
		}
		for _, id := range ids {
			del(k.Job(id))
		}
		del(k.Waiting(key))
	}
	for i, typ := range types {
		for _, key := range idx[i].Val() {
			del(k.State(typ, key))
		}
		del(k.Entities(typ))
	}
	for _, key := range []string{k.Queue(), k.Delayed(), k.Parked(), k.Holds(), k.Bodies(), k.Expiring(), k.Schedules(), k.ScheduleTicks()} {
		del(key)
	}
	return s.runWrites(ctx, copyScript, ws)
}

// PrepareReshard makes sure a split finds every entity state: states
// written before the entity-type set (keys.EntityTypes) or the per-type
// indexes existed are found by one SCAN of the keyspace (each master's, on
// Redis Cluster), their types recorded and their keys added to their
// index; then corral:meta says "indexed", and splits may start. A cluster
// created by this release says so from its start and needs no scan. known names entity types the workers' handlers declare, which
// tells a type from a key when a type holds a ':'. It returns how many
// types there are and how many keys it added to an index.
func (s *Store) PrepareReshard(ctx context.Context, known []string) (types, indexed int, err error) {
	set := map[string]bool{}
	for _, t := range known {
		set[t] = true
	}
	have, err := s.rdb.SMembers(ctx, keys.EntityTypes).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("store: prepare reshard: %w", err)
	}
	for _, t := range have {
		set[t] = true
	}
	// Index keys name their type whole.
	err = s.scanAll(ctx, "corral:{p*}:ents:*", func(batch []string) error {
		for _, k := range batch {
			if _, rest, ok := strings.Cut(k, "}:ents:"); ok {
				set[rest] = true
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	err = s.scanAll(ctx, "corral:{p*}:st:*", func(batch []string) error {
		pipe := s.rdb.Pipeline()
		for _, k := range batch {
			p, typ, key, ok := parseStateKey(k, set)
			if !ok {
				continue
			}
			set[typ] = true
			pipe.ZAddNX(ctx, keys.For(p).Entities(typ), redis.Z{Member: key})
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, c := range cmds {
			if n, _ := c.(*redis.IntCmd).Result(); n > 0 {
				indexed++
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	all := make([]any, 0, len(set))
	for t := range set {
		all = append(all, t)
	}
	if len(all) > 0 {
		if err := s.rdb.SAdd(ctx, keys.EntityTypes, all...).Err(); err != nil {
			return 0, 0, fmt.Errorf("store: prepare reshard: %w", err)
		}
	}
	// From now on every state is indexed: the workers of this release
	// index what they write.
	if err := s.rdb.HSet(ctx, keys.Meta, "indexed", 1).Err(); err != nil {
		return 0, 0, fmt.Errorf("store: prepare reshard: %w", err)
	}
	return len(all), indexed, nil
}

// parseStateKey splits "corral:{pN}:st:TYPE:KEY", preferring a known type
// that prefixes the rest (a type may hold a ':'), else the first segment.
func parseStateKey(k string, known map[string]bool) (p int, typ, key string, ok bool) {
	rest, found := strings.CutPrefix(k, "corral:{p")
	if !found {
		return 0, "", "", false
	}
	num, rest, found := strings.Cut(rest, "}:st:")
	if !found {
		return 0, "", "", false
	}
	p, err := strconv.Atoi(num)
	if err != nil {
		return 0, "", "", false
	}
	best := ""
	for t := range known {
		if strings.HasPrefix(rest, t+":") && len(t) > len(best) {
			best = t
		}
	}
	if best == "" {
		if best, _, found = strings.Cut(rest, ":"); !found {
			return 0, "", "", false
		}
	}
	return p, best, rest[len(best)+1:], true
}

// scanAll SCANs the whole keyspace (every master's on Redis Cluster) for
// pattern, in batches.
func (s *Store) scanAll(ctx context.Context, pattern string, fn func([]string) error) error {
	scan := func(ctx context.Context, c redis.UniversalClient, fn func([]string) error) error {
		var cursor uint64
		for {
			ks, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return fmt.Errorf("store: scan %s: %w", pattern, err)
			}
			if len(ks) > 0 {
				if err := fn(ks); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex // fn is not safe for concurrent use
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return scan(ctx, m, func(ks []string) error {
				mu.Lock()
				defer mu.Unlock()
				return fn(ks)
			})
		})
	}
	return scan(ctx, s.rdb, fn)
}
