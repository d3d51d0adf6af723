package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/routing"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// ErrConflict means a job id was already submitted with other content.
var ErrConflict = errors.New("job id already used with different content")

// enqueueScript appends jobs of one partition to its stream, each once per
// id, or, when one has a not-before in the future, adds it to the delayed
// set. A whole partition group in one call costs Redis far less than one
// call per job, and every key shares the partition's hash tag. A new job
// record holds only the content hash: no status means queued. Redis
// bounds a cluster's ingest, and most of its time here goes to Lua and its
// strings, so a job due now takes three arguments and the reply lists
// only the jobs that were not enqueued.
//
// The partition's delayed jobs due at now go first (see releaseDueLua).
//
// With a depth limit, the partition's depth (its stream's length and its
// delayed, parked and waiting jobs, all in bodies) is counted first, in
// O(1); a new job that would pass the limit stops the call there.
//
// A partition being split, or split to another count than the caller
// routed by, refuses the call first (see splitCheckLua).
//
// KEYS[1] partition stream, KEYS[2] delayed set, KEYS[3] bodies, KEYS[4]
// split mark, then KEYS[4+i] the job record of job i.
// ARGV[1] job count, ARGV[2] now unix ms, ARGV[3] depth limit ("0" =
// none), ARGV[4] the partition count the jobs were routed by, then per job: content hash, due unix ms ("0" = now), then for a
// job due now the packed stream entry field "j", for a delayed one its
// body (delayedBody) and its id.
// Returns the jobs not enqueued, as pairs: job number (from 1) and, if
// the same job was already submitted, how it ended (an End: 0 not yet),
// -1 if the id was used for other content, or -2 - depth if the queue was
// full: that job and every later one of the call were not enqueued (the
// last pair).
var enqueueScript = redis.NewScript(releaseDueLua + splitCheckLua + `
local moving = splitCheck(KEYS[4], ARGV[4])
if moving then return moving end
releaseDue(KEYS[2], KEYS[3], KEYS[1], ARGV[2], -1)
local ended = {d = 1, x = 2, n = 3, c = 4}
local out, a = {}, 5
local limit, depth = tonumber(ARGV[3]), 0
if limit > 0 then depth = redis.call('XLEN', KEYS[1]) + redis.call('HLEN', KEYS[3]) end
for i = 1, tonumber(ARGV[1]) do
  local rec, hash, due = KEYS[4 + i], ARGV[a], ARGV[a + 1]
  if limit > 0 and depth >= limit and redis.call('EXISTS', rec) == 0 then
    out[#out + 1] = i
    out[#out + 1] = -2 - depth
    return out
  end
  if redis.call('HSETNX', rec, 'h', hash) == 0 then
    out[#out + 1] = i
    if redis.call('HGET', rec, 'h') == hash then
      local st = redis.call('HGET', rec, 's')
      out[#out + 1] = st and ended[string.sub(st, 1, 1)] or 0
    else
      out[#out + 1] = -1
    end
  elseif due == '0' then
    redis.call('XADD', KEYS[1], '*', 'j', ARGV[a + 2])
    depth = depth + 1
  else
    redis.call('ZADD', KEYS[2], due, ARGV[a + 3])
    redis.call('HSET', KEYS[3], ARGV[a + 3], ARGV[a + 2])
    depth = depth + 1
  end
  a = a + ((due == '0') and 3 or 4)
end
return out
`)

// reserveScript reserves job ids for the whole cluster. The idempotency
// record of a job lives in the partition of its key, where the enqueue
// and the commit scripts find it; alone it would let one id be used for
// keys of two partitions. So an id is first reserved in a key hashed by
// the id (keys.IDs), holding the content hash of the one job it names:
// same content goes on to the enqueue, whose per-partition record dedups
// it as before (a crash between the two steps leaves the reservation, and
// the same job submitted again is then enqueued); other content is a
// conflict and is not enqueued. The reservation lasts the dedup window
// from the submission, or from when a delayed job is due.
//
// KEYS[i] the reservation of id i (all of one id group).
// ARGV per id: content hash, then TTL ms ("0" = kept for ever).
// Returns the numbers (from 1) of the ids reserved for other content.
var reserveScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local h, ttl = ARGV[2 * i - 1], ARGV[2 * i]
  local ok
  if ttl == '0' then
    ok = redis.call('SET', KEYS[i], h, 'NX')
  else
    ok = redis.call('SET', KEYS[i], h, 'NX', 'PX', ttl)
  end
  if not ok and redis.call('GET', KEYS[i]) ~= h then out[#out + 1] = i end
end
return out
`)

// reserve reserves the ids of jobs (see reserveScript), in one pipeline of
// one call per id group, and returns per job nil, or ErrConflict or the
// Redis error that leaves it not enqueued.
func (s *Store) reserve(ctx context.Context, jobs []Job, now int64) ([]error, error) {
	groups := map[int][]int{}
	var order []int
	for i := range jobs {
		g := sharding.PartitionOf(jobs[i].ID, keys.IDGroups)
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], i)
	}
	type call struct {
		idx  []int
		keys []string
		args []any
	}
	calls := make([]call, 0, len(order))
	var scratch []byte
	window := s.cfg.DoneRetention.Milliseconds()
	for _, g := range order {
		for len(groups[g]) > 0 {
			idx := groups[g][:min(len(groups[g]), enqueueChunk)]
			groups[g] = groups[g][len(idx):]
			c := call{idx: idx, keys: make([]string, len(idx)), args: make([]any, 0, 2*len(idx))}
			for n, i := range idx {
				j := &jobs[i]
				var hash string
				hash, scratch = contentHash(j, scratch)
				ttl := int64(0)
				if window > 0 {
					ttl = window + max(0, j.NotBefore-now)
				}
				c.keys[n] = keys.IDs(g).Reserved(j.ID)
				c.args = append(c.args, hash, ttl)
			}
			calls = append(calls, c)
		}
	}
	// Running a call again after NOSCRIPT is safe: the same content finds
	// its own reservation.
	cmds, err := s.evalPipelined(ctx, []*redis.Script{reserveScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(calls))
		for n, c := range calls {
			cmds[n] = reserveScript.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		return cmds
	})
	if err != nil {
		return nil, err
	}
	out := make([]error, len(jobs))
	for n, c := range calls {
		res, err := cmds[n].Int64Slice()
		if err != nil {
			for _, i := range c.idx {
				out[i] = fmt.Errorf("store: reserve id %q: %w", jobs[i].ID, err)
			}
			continue
		}
		for _, num := range res {
			if num >= 1 && int(num) <= len(c.idx) {
				i := c.idx[num-1]
				out[i] = fmt.Errorf("job %q: %w", jobs[i].ID, ErrConflict)
			}
		}
	}
	return out, nil
}

// enqueueChunk bounds one enqueue script call, so a large submission of
// one partition does not hold Redis for long.
const enqueueChunk = 512

// EnqueueResult tells what happened to one job.
type EnqueueResult struct {
	Duplicate bool  // already submitted with the same content; not enqueued again
	End       End   // for a duplicate: how the job already submitted ended, if it did
	Err       error // ErrConflict or a Redis error
}

// End is how a finished job ended, as its record says.
type End int

// The ends of a job; the enqueue script numbers them the same.
const (
	NotEnded End = iota
	EndedDone
	EndedDead
	EndedRejected
	EndedCancelled
)

// Enqueue reserves the jobs' ids for the cluster (see reserveScript), then
// appends the jobs to their partitions' streams in one pipeline; a job
// whose NotBefore is in the future is held in its partition's delayed set
// instead. Each job's Partition must be set; with a live layout
// (Config.Routing) the store sets it from the key instead, and the caller
// finds where each job went there. A job whose id names another job gets
// ErrConflict and is not enqueued.
func (s *Store) Enqueue(ctx context.Context, jobs []Job) ([]EnqueueResult, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	now := time.Now().UnixMilli()
	routes := s.routes()
	if s.cfg.Routing != nil {
		// Every job is placed by one view of the layout, the one whose
		// counts the scripts check: a job placed by an older view would
		// be checked against a newer one's count.
		for i := range jobs {
			jobs[i].Partition = routes.PartitionOf(jobs[i].Key)
		}
	}
	refused, err := s.reserve(ctx, jobs, now)
	if err != nil {
		return nil, err
	}
	out := make([]EnqueueResult, len(jobs))
	if err := s.priorRecords(ctx, routes, jobs, refused, out, now); err != nil {
		return nil, err
	}
	// Group by partition, keeping submission order within each, so that
	// per-key order holds and each script call touches one hash slot. A
	// stable sort of the indexes by partition is one allocation, where a
	// map of slices is one per partition and more as they grow.
	idx := make([]int, 0, len(jobs))
	for i := range jobs {
		if refused[i] != nil {
			out[i].Err = refused[i]
			continue
		}
		if out[i].Duplicate || out[i].Err != nil {
			continue // found in the partition its key had before a split
		}
		idx = append(idx, i)
	}
	slices.SortStableFunc(idx, func(a, b int) int { return jobs[a].Partition - jobs[b].Partition })
	// The arguments of every script call, built once (a retry after
	// NOSCRIPT sends the same ones).
	type call struct {
		idx  []int
		keys []string
		args []any
		cmd  *redis.Cmd
		wave int // the call's place among its partition's calls
	}
	var calls []call
	var scratch []byte
	waves := 0
	for start, wave := 0, 0; start < len(idx); {
		p := jobs[idx[start]].Partition
		if start > 0 && jobs[idx[start-1]].Partition == p {
			wave++
		} else {
			wave = 0
		}
		waves = max(waves, wave+1)
		end := start + 1
		for end < len(idx) && end-start < enqueueChunk && jobs[idx[end]].Partition == p {
			end++
		}
		group := idx[start:end]
		start = end
		k := keys.For(p)
		ks := make([]string, 4, 4+len(group))
		ks[0], ks[1], ks[2], ks[3] = k.Queue(), k.Delayed(), k.Bodies(), k.Split()
		args := make([]any, 4, 4+3*len(group))
		args[0], args[1], args[2], args[3] = len(group), now, s.cfg.MaxQueueDepth, routes.Modulus(p)
		for _, i := range group {
			j := &jobs[i]
			var hash string
			hash, scratch = contentHash(j, scratch)
			ks = append(ks, k.Job(j.ID))
			if j.NotBefore > now {
				args = append(args, hash, itoa(j.NotBefore), delayedBody(j), j.ID)
			} else {
				args = append(args, hash, "0", packJob(j))
			}
		}
		calls = append(calls, call{idx: group, keys: ks, args: args, wave: wave})
	}
	// A pipeline holds at most one call per partition: when Redis answers
	// NOSCRIPT to a call and a later call of the same partition runs (the
	// script was loaded meanwhile), running the first again would put its
	// jobs behind the later ones. So a partition's second call goes in the
	// next pipeline, after the first has run.
	// moved holds the partitions that refused their call because they are
	// being split, or were split since the layout was read: their later
	// calls are not sent, and all their jobs get the MovingError.
	moved := map[int]error{}
	for wave := 0; wave < waves; wave++ {
		_, err := s.evalPipelined(ctx, []*redis.Script{enqueueScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
			// After NOSCRIPT (Redis restarted, or the script was loaded while
			// this pipeline ran) only the calls that did not run go again: one
			// that ran would report its own jobs as duplicates.
			cmds := make([]*redis.Cmd, 0, len(calls))
			for n := range calls {
				if c := calls[n].cmd; calls[n].wave != wave || c != nil && !isNoScript(c.Err()) {
					continue
				}
				if moved[jobs[calls[n].idx[0]].Partition] != nil {
					continue
				}
				calls[n].cmd = enqueueScript.EvalSha(ctx, pipe, calls[n].keys, calls[n].args...)
				cmds = append(cmds, calls[n].cmd)
			}
			return cmds
		})
		if err != nil {
			return nil, err
		}
		// A call that failed stops the enqueue here: the partition's next
		// call would put later jobs ahead of the failed call's, which the
		// caller sends again. The calls that ran dedup that resend. A full
		// queue stops it the same way.
		for n := range calls {
			if c := calls[n].cmd; calls[n].wave == wave && c != nil && c.Err() != nil {
				p := jobs[calls[n].idx[0]].Partition
				if err := movingErr(p, c.Err()); errors.Is(err, ErrMoving) {
					moved[p] = err
					continue
				}
				return nil, fmt.Errorf("store: enqueue in partition %d: %w", p, c.Err())
			}
		}
		for n := range calls {
			if calls[n].wave == wave && calls[n].cmd != nil {
				if depth, full := queueFull(calls[n].cmd); full {
					return nil, &QueueFullError{Partition: jobs[calls[n].idx[0]].Partition, Depth: depth, Max: s.cfg.MaxQueueDepth}
				}
			}
		}
	}
	for _, c := range calls {
		if err := moved[jobs[c.idx[0]].Partition]; err != nil {
			for _, i := range c.idx {
				out[i].Err = err
			}
			continue
		}
		res, err := c.cmd.Slice()
		if err == nil && len(res)%2 != 0 {
			err = fmt.Errorf("odd reply of %d values", len(res))
		}
		if err != nil {
			for _, i := range c.idx {
				out[i].Err = fmt.Errorf("store: enqueue %q: %w", jobs[i].ID, err)
			}
			continue
		}
		for n := 0; n < len(res); n += 2 {
			num, _ := res[n].(int64)
			code, _ := res[n+1].(int64)
			if num < 1 || int(num) > len(c.idx) {
				continue
			}
			i := c.idx[num-1]
			if code < 0 {
				out[i].Err = fmt.Errorf("job %q: %w", jobs[i].ID, ErrConflict)
			} else {
				out[i].Duplicate, out[i].End = true, End(code)
			}
		}
	}
	return out, nil
}

// queueFull reads an enqueue call's reply: whether the queue was full,
// and its depth then (the last pair's code is -2 - depth).
func queueFull(c *redis.Cmd) (int64, bool) {
	res, err := c.Slice()
	if err != nil || len(res) < 2 {
		return 0, false
	}
	code, _ := res[len(res)-1].(int64)
	if code > -2 {
		return 0, false
	}
	return -2 - code, true
}

// contentHash is j.ContentHash() hashed from one reused buffer, without
// the allocations of a hash.Hash; it returns the buffer for the next job.
func contentHash(j *Job, buf []byte) (string, []byte) {
	buf = append(buf[:0], j.Handler...)
	buf = append(buf, 0)
	buf = append(buf, j.Key...)
	buf = append(buf, 0)
	buf = append(buf, j.Payload...)
	sum := sha256.Sum256(buf)
	var h [32]byte
	hex.Encode(h[:], sum[:16])
	return string(h[:]), buf
}

func isConflict(err error) bool { return errors.Is(err, ErrConflict) }

// ReserveID reserves job's id for the cluster, as Enqueue does, for a job
// that skips the queue (a direct call): nil when the id is new or names
// this same job, ErrConflict when it names another.
func (s *Store) ReserveID(ctx context.Context, job Job) error {
	errs, err := s.reserve(ctx, []Job{job}, time.Now().UnixMilli())
	if err != nil {
		return err
	}
	return errs[0]
}

// priorRecords looks for the records of jobs whose key moved to another
// partition by a split (see routing.View.Parent): a job finished in the
// parent before the split is a duplicate there, not a new job in the
// child. Such a job gets its result in out and is not enqueued.
func (s *Store) priorRecords(ctx context.Context, routes *routing.View, jobs []Job, refused []error, out []EnqueueResult, now int64) error {
	if !routes.Moved(now) {
		return nil
	}
	var idx []int
	var cmds []*redis.SliceCmd
	var pipe redis.Pipeliner
	for i := range jobs {
		if refused[i] != nil {
			continue
		}
		pp := routes.Parent(jobs[i].Key, jobs[i].Partition, now)
		if pp < 0 {
			continue
		}
		if pipe == nil {
			pipe = s.rdb.Pipeline()
		}
		idx = append(idx, i)
		cmds = append(cmds, pipe.HMGet(ctx, keys.For(pp).Job(jobs[i].ID), "h", "s"))
	}
	if pipe == nil {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: look for records in split partitions: %w", err)
	}
	ended := map[string]End{"d": EndedDone, "x": EndedDead, "n": EndedRejected, "c": EndedCancelled}
	var scratch []byte
	for n, i := range idx {
		v := cmds[n].Val()
		h, ok := v[0].(string)
		if !ok {
			continue
		}
		var hash string
		hash, scratch = contentHash(&jobs[i], scratch)
		if h != hash {
			out[i].Err = fmt.Errorf("job %q: %w", jobs[i].ID, ErrConflict)
			continue
		}
		st, _ := v[1].(string)
		out[i].Duplicate, out[i].End = true, ended[recordStatus(st)]
	}
	return nil
}
