package store

import (
	"context"
	"fmt"
	"strconv"

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
// EXPIRE, or none, and the sweep leaves it.

// sweepFinishedScript drops the records named by the partition's finished
// log entries that are older than the done retention and not swept yet,
// at most limit records' worth of entries per call, then trims the log of
// the swept entries past its retention.
//
// KEYS[1] finished log, KEYS[2] its sweep mark (the last entry swept).
// ARGV[1] done retention ms, ARGV[2] the log's retention ms ("0": kept for
// ever), ARGV[3] "1" when a done job's result is kept longer than the done
// retention (its record has its own), ARGV[4] the prefix of the
// partition's job records (a record's key is it and the job's id),
// ARGV[5] limit.
// Returns {entries swept, records dropped, 1 if there is more to sweep}.
var sweepFinishedScript = redis.NewScript(`
local doneMs, keepMs, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local longResults, prefix = ARGV[3] == '1', ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mark = redis.call('GET', KEYS[2]) or '0-0'
local cutoff = now - doneMs
local entries, dropped, named, more = 0, 0, 0, 0
local del = {}
local function drop()
  if #del > 0 then
    redis.call('DEL', unpack(del))
    dropped = dropped + #del
    del = {}
  end
end
if cutoff > 0 then
  local es = redis.call('XRANGE', KEYS[1], '(' .. mark, string.format('%.0f', cutoff), 'COUNT', 64)
  for _, e in ipairs(es) do
    if named >= limit then
      more = 1
      break
    end
    local ms = tonumber(string.match(e[1], '^%d+'))
    local g
    for i = 1, #e[2], 2 do
      if e[2][i] == 'g' then g = e[2][i + 1] end
    end
    -- "<status><id> <submitted> <hlen> <klen> <handler><key>" per job;
    -- an "f" entry's records expire by themselves
    local pos, n = 1, g and #g or 0
    while pos <= n do
      local sp1 = string.find(g, ' ', pos, true)
      local sp2 = sp1 and string.find(g, ' ', sp1 + 1, true)
      local sp3 = sp2 and string.find(g, ' ', sp2 + 1, true)
      local sp4 = sp3 and string.find(g, ' ', sp3 + 1, true)
      if not sp4 then break end
      local status, rec = string.sub(g, pos, pos), prefix .. string.sub(g, pos + 1, sp1 - 1)
      pos = sp4 + 2 + tonumber(string.sub(g, sp2 + 1, sp3 - 1)) + tonumber(string.sub(g, sp3 + 1, sp4 - 1))
      named = named + 1
      local v = redis.call('HMGET', rec, 's', 'r')
      local s = v[1]
      if s and #s > 1 and tonumber(string.match(s, '^.(%d+)')) == ms and not (longResults and status == 'd' and v[2]) then
        del[#del + 1] = rec
        if #del >= 500 then drop() end
      end
    end
    entries = entries + 1
    mark = e[1]
  end
  if #es == 64 then more = 1 end
  drop()
  if entries > 0 then redis.call('SET', KEYS[2], mark) end
end
if keepMs > 0 then
  local before = now - keepMs
  local markMs = tonumber(string.match(mark, '^%d+'))
  if markMs < before then before = markMs end
  if before > 0 then redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', before)) end
end
return {entries, dropped, more}
`)

// sweepLimit bounds the records one sweep call looks at (whole entries,
// so a little more), so a partition with a large backlog does not hold
// Redis for long; the rest goes in the calls that follow.
const sweepLimit = 1000

// Swept is what SweepFinished did in one partition.
type Swept struct {
	Entries int // finished log entries swept
	Records int // records dropped
}

// SweepFinished drops the records of the partitions' jobs that finished
// more than the done retention ago (see sweepFinishedScript), and trims
// their finished logs, in pipelined calls until nothing is left to sweep.
// With the done retention 0 (records kept for ever) it does nothing.
func (s *Store) SweepFinished(ctx context.Context, partitions []int) (map[int]Swept, error) {
	out := make(map[int]Swept, len(partitions))
	if s.cfg.DoneRetention <= 0 {
		return out, nil
	}
	long := "0"
	if s.cfg.ResultRetention <= 0 || s.cfg.ResultRetention > s.cfg.DoneRetention {
		long = "1"
	}
	done, keep := itoa(s.cfg.DoneRetention.Milliseconds()), itoa(s.logRetention().Milliseconds())
	for len(partitions) > 0 {
		cmds, err := s.evalPipelined(ctx, []*redis.Script{sweepFinishedScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(partitions))
			for i, p := range partitions {
				k := keys.For(p)
				cmds[i] = sweepFinishedScript.EvalSha(ctx, pipe, []string{k.Finished(), k.Swept()},
					done, keep, long, k.Job(""), strconv.Itoa(sweepLimit))
			}
			return cmds
		})
		if err != nil {
			return out, err
		}
		var more []int
		for i, c := range cmds {
			v, err := c.Int64Slice()
			if err == nil && len(v) != 3 {
				err = fmt.Errorf("unexpected reply %v", v)
			}
			if err != nil {
				return out, fmt.Errorf("store: sweep finished records of partition %d: %w", partitions[i], err)
			}
			sw := out[partitions[i]]
			sw.Entries += int(v[0])
			sw.Records += int(v[1])
			out[partitions[i]] = sw
			if v[2] == 1 {
				more = append(more, partitions[i])
			}
		}
		partitions = more
	}
	return out, nil
}
