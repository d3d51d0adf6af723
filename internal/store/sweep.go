package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// A job's record kept for the done retention (the dedup window) is not
// given a time to live of its own: an EXPIRE per job was the commit's
// dearest command (each also sets the key in Redis's table of expiring
// keys and is written to the AOF as a PEXPIREAT, and each expiry is
// written there again as a DEL). The finished log names every job a commit
// finished, under the millisecond each record keeps as its finish time, so
// once an entry is older than the done retention the owner's sweep drops
// the records it names, many keys per DEL, then the entries themselves
// once they are past the log's own retention.
//
// A record is dropped only if it still says it finished at the entry's
// millisecond: a job finished again later (a dead letter replayed and
// finished again) is named by a later entry, and one waiting again after
// its replay has no status. A record with a retention of its own (a
// result kept longer than the done retention, or for ever) keeps its own
// EXPIRE, or none, and the sweep leaves it; but a record with a result
// finished while results were kept no longer than the done retention has
// no EXPIRE, and goes with the others even once they are kept longer.

// sweepFinishedScript drops the records named by finished log entries
// that are older than the done retention and after the sweep mark, and
// moves the mark past them; then it trims the log of the swept entries
// past its retention. The caller reads the entries and names their jobs
// (parsing them in Lua would cost more than the rest); a record is dropped
// only if it says it finished at its entry's millisecond, so a wrong name
// drops nothing.
//
// KEYS[1] finished log, KEYS[2] its sweep mark (the last entry swept).
// ARGV[1] done retention ms, ARGV[2] the log's retention ms ("0": kept for
// ever), ARGV[3] how long a done job's record with a result is kept: "done"
// the done retention, "longer" longer (such a record has its own time to
// live; one without was finished while it was not longer, and goes),
// "ever" for ever, ARGV[4] the
// prefix of the partition's job records (a record's key is it and the
// job's id), then per entry, in log order: its id and the ids of the jobs
// it names, space-separated in one arg (ids hold no space).
// Returns {entries swept, records dropped}.
var sweepFinishedScript = redis.NewScript(`
local doneMs, keepMs, results, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mark = redis.call('GET', KEYS[2]) or '0-0'
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, tonumber(ms), tonumber(seq)
end
local _, markMs, markSeq = split(mark)
local entries, dropped, del = 0, 0, {}
local function drop()
  if #del > 0 then
    redis.call('DEL', unpack(del))
    dropped = dropped + #del
    del = {}
  end
end
for a = 5, #ARGV, 2 do
  local id = ARGV[a]
  local msStr, ms, seq = split(id)
  if ms + doneMs > now then break end
  if ms > markMs or ms == markMs and seq > markSeq then
    -- the record's status is "<status><ms> ...": its finish time first
    local finishedHere = msStr .. ' '
    for job in string.gmatch(ARGV[a + 1], '%S+') do
      local rec, s, r = prefix .. job, nil, nil
      if results ~= 'done' then
        local v = redis.call('HMGET', rec, 's', 'r')
        s, r = v[1], v[2]
      else
        s = redis.call('HGET', rec, 's')
      end
      if s and string.find(s, finishedHere, 2, true) == 2 then
        local keep = false
        if r and string.sub(s, 1, 1) == 'd' then
          keep = results == 'ever' or redis.call('PTTL', rec) > 0
        end
        if not keep then
          del[#del + 1] = rec
          if #del >= 500 then drop() end
        end
      end
    end
    mark, markMs, markSeq = id, ms, seq
    entries = entries + 1
  end
end
drop()
if entries > 0 then redis.call('SET', KEYS[2], mark) end
if keepMs > 0 then
  local before = now - keepMs
  if markMs < before then before = markMs end
  if before > 0 then redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', before)) end
end
return {entries, dropped}
`)

// sweepEntries is how many finished log entries one sweep call reads, and
// sweepLimit about how many records it looks at (whole entries, so a
// little more), so a partition with a large backlog does not hold Redis
// for long; the rest goes in the calls that follow.
const (
	sweepEntries = 64
	sweepLimit   = 1000
)

// Swept is what SweepFinished did in one partition.
type Swept struct {
	Entries int // finished log entries swept
	Records int // records dropped
}

// SweepFinished drops the records of the partitions' jobs that finished
// more than the done retention ago (see sweepFinishedScript), and trims
// their finished logs, until nothing is left to sweep: per round, three
// pipelined round trips (the sweep marks, the entries past the retention,
// the sweeps of the partitions that have any, or may trim). With the done
// retention 0 (records kept for ever) it does nothing.
func (s *Store) SweepFinished(ctx context.Context, partitions []int) (map[int]Swept, error) {
	out := make(map[int]Swept, len(partitions))
	if s.cfg.DoneRetention <= 0 {
		return out, nil
	}
	results := "done"
	switch {
	case s.cfg.ResultRetention <= 0:
		results = "ever"
	case s.cfg.ResultRetention > s.cfg.DoneRetention:
		results = "longer"
	}
	done, keep := itoa(s.cfg.DoneRetention.Milliseconds()), itoa(s.logRetention().Milliseconds())
	for len(partitions) > 0 {
		pipe := s.rdb.Pipeline()
		marks := make([]*redis.StringCmd, len(partitions))
		for i, p := range partitions {
			marks[i] = pipe.Get(ctx, keys.For(p).Swept())
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("store: read sweep marks: %w", err)
		}
		// Entries the retention is over for by this clock; the script
		// checks them against Redis's.
		cutoff := itoa(time.Now().Add(-s.cfg.DoneRetention).UnixMilli())
		pipe = s.rdb.Pipeline()
		reads := make([]*redis.XMessageSliceCmd, len(partitions))
		for i, p := range partitions {
			mark := marks[i].Val()
			if mark == "" {
				mark = "0-0"
			}
			reads[i] = pipe.XRangeN(ctx, keys.For(p).Finished(), "("+mark, cutoff, sweepEntries)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("store: read finished logs: %w", err)
		}
		// A partition with no entry to sweep needs the script only to
		// trim, which it may when the log outlives the done retention:
		// else the last sweep trimmed all it could.
		trims := keep != "0" && keep != done
		var calls []int // indexes into partitions, of the script calls
		full := make([]bool, len(partitions))
		cmds, err := s.evalPipelined(ctx, []*redis.Script{sweepFinishedScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
			calls = calls[:0]
			var cmds []*redis.Cmd
			for i, p := range partitions {
				k := keys.For(p)
				es := reads[i].Val()
				if len(es) == 0 && !trims {
					continue
				}
				args := make([]any, 0, 4+2*len(es))
				args = append(args, done, keep, results, k.Job(""))
				named := 0
				var ids []byte
				for n, e := range es {
					if named >= sweepLimit {
						es = es[:n]
						break
					}
					// An "f" entry names none: its records expire by themselves.
					g, _ := e.Values["g"].(string)
					var count int
					ids, count = appendLoggedIDs(ids[:0], g)
					args = append(args, e.ID, string(ids))
					named += count
				}
				full[i] = len(es) < len(reads[i].Val()) || len(es) == sweepEntries
				calls = append(calls, i)
				cmds = append(cmds, sweepFinishedScript.EvalSha(ctx, pipe, []string{k.Finished(), k.Swept()}, args...))
			}
			return cmds
		})
		if err != nil {
			return out, err
		}
		var more []int
		for n, c := range cmds {
			p := partitions[calls[n]]
			v, err := c.Int64Slice()
			if err == nil && len(v) != 2 {
				err = fmt.Errorf("unexpected reply %v", v)
			}
			if err != nil {
				return out, fmt.Errorf("store: sweep finished records of partition %d: %w", p, err)
			}
			sw := out[p]
			sw.Entries += int(v[0])
			sw.Records += int(v[1])
			out[p] = sw
			// More to read, and this call got on (with Redis's clock
			// behind this one's, it may not have): go again.
			if full[calls[n]] && v[0] > 0 {
				more = append(more, p)
			}
		}
		partitions = more
	}
	return out, nil
}
