package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/routing"
	"github.com/redis/go-redis/v9"
)

// relayScript enqueues the jobs outbox entries emitted for one target
// partition, each entry's once: a second relay of an entry (after a crash
// between enqueue and trim, or while another of its targets fails) finds
// the entry's mark and adds nothing, but renews the mark, so a mark lives
// a mark TTL past the entry's last relay. The marks live in the target
// partition, so the script touches one slot. An entry's mark is set after
// its jobs are added: a call that fails half-way leaves the entries it did
// not finish unmarked, to be relayed again.
// The target's due delayed jobs go first (see releaseDueLua).
//
// A target being split, or split to another count than the relay routed
// by, refuses the call (see splitCheckLua). A mark holds the partition
// count the jobs were routed by, so after a split the mark an entry left
// in the parent is told from one for the parent's own keys.
//
// KEYS[1] target queue, KEYS[2] its delayed set, KEYS[3] its bodies,
// KEYS[4] its split mark, KEYS[4+e] entry e's mark in the target partition.
// ARGV[1] mark TTL s, ARGV[2] now unix ms, ARGV[3] the partition count the
// jobs were routed by, then per entry: n, then its n packed jobs (packJob).
// Returns the number of jobs enqueued.
var relayScript = redis.NewScript(releaseDueLua + splitCheckLua + `
local moving = splitCheck(KEYS[4], ARGV[3])
if moving then return moving end
releaseDue(KEYS[2], KEYS[3], KEYS[1], ARGV[2], -1)
local a, added = 4, 0
for e = 5, #KEYS do
  local n = tonumber(ARGV[a])
  if redis.call('EXPIRE', KEYS[e], ARGV[1]) == 0 then
    for i = a + 1, a + n do
      redis.call('XADD', KEYS[1], '*', 'j', ARGV[i])
    end
    redis.call('SET', KEYS[e], ARGV[3], 'EX', ARGV[1])
    added = added + n
  end
  a = a + 1 + n
end
return added
`)

// RelaySource is an outbox to relay and where to read it from.
type RelaySource struct {
	Partition int
	// After is the id of the entry to read after; "" reads from the head.
	// A caller that holds a target back passes the last id it read, so
	// the entries kept for that target do not hide the ones behind them.
	After string
}

// SourceRelay is what one relay round did with one outbox.
type SourceRelay struct {
	Read  int    // entries read
	Moved int    // entries relayed to all their targets and dropped
	Kept  int    // entries left for a target that failed or was held back
	Last  string // id of the last entry read
	Err   error  // an entry could not be read; it is kept
}

// RelayRound is what RelayMany did: per source partition, and per target
// partition the jobs it enqueued or the error that stopped it.
type RelayRound struct {
	Sources map[int]SourceRelay
	Reached map[int]int // targets written to, and the jobs added (0: all relayed before)
	Failed  map[int]error
}

// RelayMany relays up to max outbox entries of each source in three round
// trips whatever their number: read the outboxes, enqueue, drop what was
// relayed. It is at-least-once, and the jobs an entry emitted for one
// target go in one script call that marks the entry as relayed there, so
// a second relay adds nothing: the jobs are applied once. An entry's jobs
// keep their order in every target.
//
// A target whose enqueue fails does not stop the others: the entries with
// jobs for it stay in their outbox (their other targets are relayed and
// marked) and the target is reported in Failed. Targets for which held
// returns true are not written to at all this round, the same way, so a
// caller can retry a failing target with backoff while the rest go on. The
// error is for the reads and trims that concern every source.
func (s *Store) RelayMany(ctx context.Context, sources []RelaySource, max int64, partitionOf func(key string) int, held func(target int) bool) (RelayRound, error) {
	round := RelayRound{Sources: make(map[int]SourceRelay, len(sources)), Reached: map[int]int{}, Failed: map[int]error{}}
	pipe := s.rdb.Pipeline()
	reads := make([]*redis.XMessageSliceCmd, len(sources))
	for i, src := range sources {
		from := "-"
		if src.After != "" {
			from = "(" + src.After
		}
		reads[i] = pipe.XRangeN(ctx, keys.For(src.Partition).Outbox(), from, "+", max)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return round, fmt.Errorf("store: read outboxes: %w", err)
	}
	markTTL := int64(s.cfg.DoneRetention.Seconds())
	now := time.Now().UnixMilli()
	routes := s.routes()
	if s.cfg.Routing != nil {
		// One view of the layout for the whole round: an entry's jobs for
		// one partition must go in one call, under one mark, and the
		// marks looked up in parents must be those of the same targets.
		partitionOf = routes.PartitionOf
	}
	// An entry relayed to a partition before that partition's split has
	// its mark there, not in the child its jobs' keys now go to: such
	// targets are looked up first, and skipped when the parent has it.
	parentMarks, err := s.parentMarks(ctx, routes, sources, reads, partitionOf, now)
	if err != nil {
		return round, err
	}
	// One call per source and target partition for all the entries read,
	// so a pipeline never holds two calls whose order matters.
	type call struct {
		target int
		keys   []string
		args   []any
	}
	var calls []*call
	// targetsOf[i][m] lists the targets of entry m of source i; bad[i][m]
	// says it could not be read, and stays.
	targetsOf := make([][][]int, len(sources))
	bad := make([][]bool, len(sources))
	for i, src := range sources {
		p := src.Partition
		msgs := reads[i].Val()
		out := SourceRelay{Read: len(msgs)}
		if len(msgs) > 0 {
			out.Last = msgs[len(msgs)-1].ID
		}
		targetsOf[i], bad[i] = make([][]int, len(msgs)), make([]bool, len(msgs))
		targets := map[int]*call{}
		for m, msg := range msgs {
			packed, ok := msg.Values["b"].(string)
			if !ok {
				out.Err = fmt.Errorf("store: outbox entry %s of partition %d has no packed jobs", msg.ID, p)
				bad[i][m] = true
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
				out.Err = fmt.Errorf("store: outbox entry %s of partition %d: %w", msg.ID, p, err)
				bad[i][m] = true
				continue
			}
			targetsOf[i][m] = order
			for _, t := range order {
				if held != nil && held(t) || parentMarks[p][msg.ID][t] {
					continue
				}
				c := targets[t]
				if c == nil {
					tk := keys.For(t)
					c = &call{target: t, keys: []string{tk.Queue(), tk.Delayed(), tk.Bodies(), tk.Split()}, args: []any{markTTL, now, routes.Modulus(t)}}
					targets[t] = c
					calls = append(calls, c)
				}
				c.keys = append(c.keys, keys.For(t).Relayed(p, msg.ID))
				c.args = append(c.args, len(byTarget[t]))
				c.args = append(c.args, byTarget[t]...)
			}
		}
		round.Sources[p] = out
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
		if err != nil {
			return round, fmt.Errorf("store: relay: %w", err)
		}
		for i, c := range cmds {
			t := calls[i].target
			n, err := c.Int()
			if err != nil {
				err = movingErr(t, err)
				if _, seen := round.Failed[t]; !seen {
					round.Failed[t] = err
				}
				continue
			}
			round.Reached[t] += n
		}
		for t := range round.Failed {
			delete(round.Reached, t) // one source's call failed: the target did
		}
	}
	// An entry goes once every target of it took its jobs. While nothing
	// is kept, the entries read are the outbox's head: one XTRIM MINID
	// drops them; otherwise the relayed ones are deleted one by one.
	pipe = s.rdb.Pipeline()
	for i, src := range sources {
		msgs := reads[i].Val()
		out := round.Sources[src.Partition]
		var gone []string
		for m, msg := range msgs {
			done := !bad[i][m]
			for _, t := range targetsOf[i][m] {
				_, failed := round.Failed[t]
				if failed || held != nil && held(t) {
					done = false
					break
				}
			}
			if done {
				gone = append(gone, msg.ID)
			}
		}
		out.Moved, out.Kept = len(gone), len(msgs)-len(gone)
		round.Sources[src.Partition] = out
		if len(gone) == 0 {
			continue
		}
		k := keys.For(src.Partition).Outbox()
		if min, ok := afterID(gone); ok && out.Kept == 0 && src.After == "" {
			pipe.XTrimMinID(ctx, k, min)
		} else {
			pipe.XDel(ctx, k, gone...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return round, fmt.Errorf("store: trim outboxes: %w", err)
	}
	return round, nil
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

// parentMarks finds, for the entries read, the targets whose jobs were
// relayed to their keys' parent partition before its split: source →
// entry id → target partition.
func (s *Store) parentMarks(ctx context.Context, routes *routing.View, sources []RelaySource, reads []*redis.XMessageSliceCmd, partitionOf func(string) int, now int64) (map[int]map[string]map[int]bool, error) {
	if !routes.Moved(now) {
		return nil, nil // no key has a parent: the entries are not decoded twice
	}
	type ask struct {
		src    int
		entry  string
		target int
		modN   string
		cmd    *redis.StringCmd
	}
	var asks []*ask
	var pipe redis.Pipeliner
	for i, src := range sources {
		for _, msg := range reads[i].Val() {
			packed, ok := msg.Values["b"].(string)
			if !ok {
				continue
			}
			seen := map[int]bool{}
			_ = eachPacked([]byte(packed), func(_ []byte, j Job) {
				t := partitionOf(j.Key)
				if seen[t] {
					return
				}
				seen[t] = true
				pp := routes.Parent(j.Key, t, now)
				if pp < 0 {
					return
				}
				if pipe == nil {
					pipe = s.rdb.Pipeline()
				}
				asks = append(asks, &ask{src: src.Partition, entry: msg.ID, target: t, modN: strconv.Itoa(routes.Modulus(t)),
					cmd: pipe.Get(ctx, keys.For(pp).Relayed(src.Partition, msg.ID))})
			})
		}
	}
	if pipe == nil {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read relay marks in split partitions: %w", err)
	}
	out := map[int]map[string]map[int]bool{}
	for _, a := range asks {
		v, err := a.cmd.Result()
		if err != nil || v == a.modN {
			continue // no mark, or one for the parent's own keys after its split
		}
		if out[a.src] == nil {
			out[a.src] = map[string]map[int]bool{}
		}
		if out[a.src][a.entry] == nil {
			out[a.src][a.entry] = map[int]bool{}
		}
		out[a.src][a.entry][a.target] = true
	}
	return out, nil
}
