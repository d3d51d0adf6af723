package store

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// The commit script's KEYS and ARGV are laid out from the tables in this
// file, on both sides: commitLua writes the Lua that reads them and
// commitArgs the Go that fills them, so neither counts positions by hand.
//
//	KEYS: the partition's keys (commitFixedKeys), then each section's
//	      items' keys, section by section in commitSections order
//	ARGV: the header (commitHeaderArgs), then how many items each section
//	      has, then each section's items' args, in the same order
//
// A section is any number of items of one fixed shape: each item takes
// len(keys) KEYS and len(args) ARGV. The script checks that #KEYS and
// #ARGV are what the counts say before it writes anything.

// commitFixedKeys are the partition's keys every commit may touch, by the
// names the script knows them by.
var commitFixedKeys = []struct {
	name string
	key  func(keys.Partition) string
}{
	{"epochKey", keys.Partition.Epoch},
	{"queueKey", keys.Partition.Queue},
	{"outboxKey", keys.Partition.Outbox},
	{"deadKey", keys.Partition.Dead},
	{"deadIndexKey", keys.Partition.DeadIndex},
	{"auditKey", keys.Partition.Audit},
	{"parkedKey", keys.Partition.Parked},
	{"holdsKey", keys.Partition.Holds},
	{"bodiesKey", keys.Partition.Bodies},
	{"delayedKey", keys.Partition.Delayed},
	{"commitsKey", keys.Partition.Commits},
	{"cancelsKey", keys.Partition.Cancels},
	{"finishedKey", keys.Partition.Finished},
	{"expiringKey", keys.Partition.Expiring},
	{"splitKey", keys.Partition.Split},
}

// The commit's header args, by position.
const (
	argGrant     = iota // the owner's grant (see lease.Grant)
	argNow              // unix ms
	argDoneTTL          // s a finished job's record is kept, 0 for ever
	argResultTTL        // s a result is kept, 0 for ever
	argAuditMax         // entries kept in the audit stream, about; "0": no audit
	argTrimMin          // the stream id right after the last acked one, "" if the acks are not in stream order
	argSeen             // commits this worker saw acknowledged under the grant
	argFinished         // the finish section's entry of the finished log (see commitEpilogue), "" for none
	argSweep            // "1": drop a few expired states from their entities' indexes; "0": not in this commit (Batch.NoSweep)
	numHeaderArgs
)

var commitHeaderArgs = [numHeaderArgs]string{
	argGrant:     "grant",
	argNow:       "now",
	argDoneTTL:   "doneTTL",
	argResultTTL: "resultTTL",
	argAuditMax:  "auditMax",
	argTrimMin:   "trimMin",
	argSeen:      "seen",
	argFinished:  "finishedLog",
	argSweep:     "sweep",
}

// commitSection is one part of a commit. The script binds each item's
// keys and args to Lua locals of these names and runs each on them; before
// and after, if set, run once before and after its items (before may
// declare locals for them). Sections run in table
// order, which is also the order of their KEYS and ARGV.
type commitSection struct {
	name   string
	keys   []string
	args   []string
	before string
	each   string
	after  string
}

// The sections of a commit, in the order they run.
const (
	secCheck  = iota // refuses a batch that left out its states (WATCHED) while its partition has watchers (see topics.go)
	secGuard         // a direct call's guard; refuses the batch (BUSY) unless it may still skip the queue
	secFinish        // a done, dead, rejected or cancelled job's status; refuses the batch (ALREADY) if it was finished before
	secAudit         // an audit entry for a done or rejected job (only with audit on)
	secDead          // a dead letter (audited with audit on)
	secUnpark        // drops a finished job's parked entry and body
	secState         // an entity's new state
	secPut           // an entity's new state, of a state the batch loaded, without a time to live
	secRevoke        // cancels a delayed job, if it is still delayed
	secUnwait        // cancels a job waiting behind its key's hold that the batch did not read
	secSettle        // drops a cancel asked for a job the batch cancelled, or found finished or gone
	secAck           // the stream entries to remove from the queue
	secOutbox        // the batch's emitted jobs, as one outbox entry
	secTrim          // drops the first n jobs waiting behind a key
	secFront         // a job to wait at the front of a key's line
	secBack          // a job to wait at the back of a key's line
	secPark          // a job that holds its key until notBefore
	secNext          // a key whose parked job finished: park the next one as due, or lift the hold
	secTopic         // a message a done job published to a topic (see topics.go)
	secWatch         // a state written, published if someone watches it (see topics.go)
	numSections
)

// commitSections is what each section's items carry and do. The guard and
// the finishes come first, so a refused batch has written nothing but the
// claims it undoes (and a guard's record). The key plans' sections (trim,
// front, back, park, next) each run for every key in turn; an item touches
// one key's line and hold, so per key they keep the order of a KeyPlan.
var commitSections = [numSections]commitSection{
	secCheck: watchedSection,
	secGuard: {
		// Refuses the batch (BUSY) unless the queue holds at most
		// lookahead entries, none of key, key is not held, no delayed job
		// is due and the state is as given; then creates the job's
		// record, refusing an id used before (see Guard).
		name: "guard",
		keys: []string{"stateKey", "recKey"},
		args: []string{"key", "lookahead", "hasState", "state", "hash"},
		each: `
local es = redis.call('XRANGE', queueKey, '-', '+', 'COUNT', tonumber(lookahead) + 1)
if #es > tonumber(lookahead) or redis.call('HEXISTS', holdsKey, key) == 1 then
  return redis.error_reply('BUSY queue')
end
for _, e in ipairs(es) do
  if e[2][1] ~= 'j' or packedKey(e[2][2]) == key then
    return redis.error_reply('BUSY queue')
  end
end
if #redis.call('ZRANGEBYSCORE', delayedKey, '-inf', now, 'LIMIT', 0, 1) > 0 then
  return redis.error_reply('BUSY delayed')
end
local st = redis.call('GET', stateKey)
if (hasState == '1') ~= (st ~= false) or (st and st ~= state) then
  return redis.error_reply('BUSY state')
end
if redis.call('HSETNX', recKey, 'h', hash) == 0 then
  return redis.error_reply('BUSY id')
end`,
	},
	secFinish: {
		// The status is set only if the record has none yet (a replayed
		// dead letter's record has none again); each job is in the section
		// once (commitLayout leaves out a repeat). The status carries the
		// finish time (the finished log entry's millisecond, logMs), then
		// tail: " <attempts> <emitted>" (see record.go). A job with no
		// answer needs one HSETNX; one with an answer (a done job's result,
		// "r", kept for the longer of the result and the done retention;
		// a rejected job's reason or a cancelled one's last error, "m";
		// "" is none) an HEXISTS and one HSET of both fields, one write
		// where HSETNX and HSET are two: with the AOF on, each write the
		// script makes is also formatted into the AOF. The handler, key
		// and submission time are in the job's item of the finished log
		// (finishedLog). If a job was finished before, the records the
		// section claimed so far are given back and the batch is refused.
		name: "finish",
		keys: []string{"recKey"},
		args: []string{"status", "tail", "answer"},
		before: `
local claimed, nc = {}, 0
local longTTL = doneTTL > 0 and (resultTTL == 0 or resultTTL > doneTTL)
local function finishedBefore(recKey)
  for i = 1, nc do
    redis.call('HDEL', claimed[i], 's', 'r', 'm')
    redis.call('PERSIST', claimed[i])
  end
  return redis.error_reply('ALREADY ' .. string.sub(recKey, #jobPrefix + 1))
end`,
		each: `
local ttl = doneTTLArg -- "0": for ever
if answer == '' then
  if redis.call('HSETNX', recKey, 's', status .. logMs .. tail) == 0 then
    return finishedBefore(recKey)
  end
else
  if redis.call('HEXISTS', recKey, 's') == 1 then
    return finishedBefore(recKey)
  end
  if status == 'd' then
    redis.call('HSET', recKey, 's', status .. logMs .. tail, 'r', answer)
    if longTTL then ttl = resultTTLArg end
  else
    redis.call('HSET', recKey, 's', status .. logMs .. tail, 'm', answer)
  end
end
nc = nc + 1
claimed[nc] = recKey
if ttl == doneTTLArg then
  -- kept for the done retention: dropped with its finished log entry
  -- (see sweepFinishedScript), so it takes no EXPIRE of its own
  if doneTTL > 0 then toSweep[#toSweep + 1] = recKey end
elseif ttl ~= '0' then
  redis.call('EXPIRE', recKey, ttl)
else
  redis.call('PERSIST', recKey) -- kept for ever
end`,
	},
	secAudit: {
		name: "audit",
		args: []string{"id"},
		each: `
redis.call('XADD', auditKey, 'MAXLEN', '~', auditMax, '*', 'e', grant, 'id', id)`,
	},
	secDead: {
		name: "dead",
		args: []string{"id", "record"},
		each: `
redis.call('HSET', deadKey, id, record)
redis.call('ZADD', deadIndexKey, now, id)
if auditMax ~= '0' then
  redis.call('XADD', auditKey, 'MAXLEN', '~', auditMax, '*', 'e', grant, 'id', id)
end`,
	},
	secUnpark: {
		name: "unpark",
		args: []string{"id"},
		each: `
redis.call('ZREM', parkedKey, id)
redis.call('HDEL', bodiesKey, id)`,
	},
	secState: {
		// States are written together, by one MSET per 1000 of them, and
		// their keys added to their entity's index by one ZADD per 1000
		// (a state the batch loaded, written without a time to live, is
		// in the put section instead). A state with a time to live is
		// set with it, and listed in expiringKey; its index entry goes
		// once it expired (sweepExpired, a few per commit, but in a commit
		// with Batch.NoSweep). Each entity appears once in a batch, in this
		// section or the put section.
		name: "state",
		keys: []string{"stateKey", "indexKey"},
		args: []string{"op", "entity", "key", "value", "ttl"},
		before: `
local swept = false
local function sweepExpired()
  swept = true
  if sweep ~= '1' then return end
  local prefix = string.sub(epochKey, 1, -6)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', expiringKey, '-inf', now, 'LIMIT', 0, 16)) do
    local sep = string.find(m, '\0', 1, true)
    local e, key = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
    if redis.call('EXISTS', prefix .. 'st:' .. e .. ':' .. key) == 0 then
      redis.call('ZREM', prefix .. 'ents:' .. e, key)
    end
    redis.call('ZREM', expiringKey, m)
  end
end`,
		each: `
if op == 'd' then
  redis.call('DEL', stateKey)
  redis.call('ZREM', indexKey, key)
  redis.call('ZREM', expiringKey, entity .. '\0' .. key)
elseif op == 't' then
  if redis.call('PEXPIRE', stateKey, ttl) == 1 then
    redis.call('ZADD', expiringKey, now + tonumber(ttl), entity .. '\0' .. key)
  end
else
  if ttl ~= '0' then
    redis.call('SET', stateKey, value, 'PX', ttl)
    redis.call('ZADD', expiringKey, now + tonumber(ttl), entity .. '\0' .. key)
  else
    mset[#mset + 1], mset[#mset + 2] = stateKey, value
    if #mset >= 2000 then
      redis.call('MSET', unpack(mset))
      mset = {}
    end
  end
  local ix = index[indexKey]
  if not ix then ix = {}; index[indexKey] = ix end
  ix[#ix + 1], ix[#ix + 2] = '0', key
  if #ix >= 2000 then
    redis.call('ZADD', indexKey, unpack(ix))
    index[indexKey] = nil
  end
end`,
		after: `
if #mset > 0 then
  redis.call('MSET', unpack(mset))
  mset = {}
end
for ixKey, ix in pairs(index) do redis.call('ZADD', ixKey, unpack(ix)) end
sweepExpired()`,
	},
	secPut: {
		// The common write: a state that was there when the batch was
		// loaded, written without a time to live. Its key is in its
		// entity's index already, so the item is the state's key and
		// value alone. With the state section's, by one MSET per 1000.
		name: "put",
		keys: []string{"stateKey"},
		args: []string{"value"},
		each: `
mset[#mset + 1], mset[#mset + 2] = stateKey, value
if #mset >= 2000 then
  redis.call('MSET', unpack(mset))
  mset = {}
end`,
		after: `
if #mset > 0 then redis.call('MSET', unpack(mset)) end
if not swept then sweepExpired() end`,
	},

	secRevoke: {
		// Only while it is delayed: a submission or a relay into the
		// partition moves a due delayed job to the queue, and the cancel
		// then waits for the batch that reads it.
		name: "revoke",
		keys: []string{"recKey"},
		args: []string{"id", "handler", "key", "submitted"},
		each: `
if redis.call('ZREM', delayedKey, id) == 1 then
  redis.call('HDEL', bodiesKey, id)
  cancelJob(recKey, id, '0', handler, key, submitted)
end`,
	},
	secUnwait: {
		// Only the owner's commits touch a key's line, and the batch did
		// not read this job: it is still there, behind the jobs the key
		// plans below trim.
		name: "unwait",
		keys: []string{"waitKey", "recKey"},
		args: []string{"id", "attempts", "handler", "key", "submitted"},
		each: `
if redis.call('LREM', waitKey, 1, id) == 1 then
  redis.call('HDEL', bodiesKey, id)
  cancelJob(recKey, id, attempts, handler, key, submitted)
end`,
	},
	secSettle: {
		name: "settle",
		args: []string{"id"},
		each: `
redis.call('ZREM', cancelsKey, id)`,
	},
	secAck: {
		// One item: the ids of the entries, space-separated. The acked
		// entries were read in one go from where the last commit left the
		// stream, so they are its head: one XTRIM MINID drops them for a
		// fraction of what deleting each one costs. If the first is not
		// the head any more, one XDEL per chunk (small enough for unpack)
		// does it instead.
		name: "ack",
		args: []string{"streamIDs"},
		each: `
local head = redis.call('XRANGE', queueKey, '-', '+', 'COUNT', 1)[1]
if trimMin ~= '' and head and head[1] == string.match(streamIDs, '^%S+') then
  redis.call('XTRIM', queueKey, 'MINID', trimMin)
else
  local acked = {}
  for id in string.gmatch(streamIDs, '%S+') do acked[#acked + 1] = id end
  for i = 1, #acked, ackChunk do
    redis.call('XDEL', queueKey, unpack(acked, i, math.min(i + ackChunk - 1, #acked)))
  end
end`,
	},
	secOutbox: {
		name: "outbox",
		args: []string{"jobs"},
		each: `
redis.call('XADD', outboxKey, '*', 'b', jobs)`,
	},
	secTrim: {
		name: "trim",
		keys: []string{"waitKey"},
		args: []string{"n"},
		each: `
redis.call('LTRIM', waitKey, n, '-1')`,
	},
	secFront: {
		name: "front",
		keys: []string{"waitKey"},
		args: []string{"id", "body"},
		each: `
redis.call('LPUSH', waitKey, id)
redis.call('HSET', bodiesKey, id, body)`,
	},
	secBack: {
		name: "back",
		keys: []string{"waitKey"},
		args: []string{"id", "body"},
		each: `
redis.call('RPUSH', waitKey, id)
redis.call('HSET', bodiesKey, id, body)`,
	},
	secPark: {
		name: "park",
		args: []string{"key", "id", "notBefore", "body"},
		each: `
redis.call('ZADD', parkedKey, notBefore, id)
redis.call('HSET', bodiesKey, id, body)
redis.call('HSET', holdsKey, key, id)`,
	},
	secNext: {
		name: "next",
		keys: []string{"waitKey"},
		args: []string{"key"},
		each: `
local nxt = redis.call('LPOP', waitKey)
if nxt then
  redis.call('ZADD', parkedKey, now, nxt)
  redis.call('HSET', holdsKey, key, nxt)
else
  redis.call('HDEL', holdsKey, key)
end`,
	},
	secTopic: publishSection,
	secWatch: watchSection,
}

// luaPackedKey is the key of a job packed for a stream entry (see packJob):
// a format byte, then id, handler and key, each after its uvarint length.
const luaPackedKey = `
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
`

// commitPrologue refuses a stale grant and a batch laid out wrong, and
// sets up what the sections share. Besides the grant, it checks that
// Redis still has every commit the worker saw acknowledged under it
// (commitsKey counts them, as "grant count"): if Redis lost one (a
// restore, a replica promoted behind), the batch was built on state Redis
// no longer has, and it is refused with LOST, as a stale owner's would be.
// A partition whose split has copied it to its children commits nothing
// more (SPLITTING): what it holds has copies there.
const commitPrologue = `
local cur = redis.call('GET', epochKey)
if cur ~= grant then
  return redis.error_reply('FENCED ' .. tostring(cur))
end
local sp = redis.call('GET', splitKey)
if sp and string.sub(sp, 1, 1) == 'c' then
  return redis.error_reply('SPLITTING ' .. sp)
end
local commits = 0
local seq = redis.call('GET', commitsKey)
if seq then
  local g, c = string.match(seq, '^(%S+) (%d+)$')
  if g == grant then commits = tonumber(c) end
end
if commits < tonumber(seen) then
  return redis.error_reply('LOST ' .. commits)
end
local count, items, wantKeys, wantArgs = {}, 0, k - 1, a - 1
for s = 1, #shape do
  count[s] = tonumber(ARGV[header + s])
  if not count[s] then
    return redis.error_reply('LAYOUT no count for section ' .. s)
  end
  items = items + count[s]
  wantKeys, wantArgs = wantKeys + count[s] * shape[s][1], wantArgs + count[s] * shape[s][2]
end
if wantKeys ~= #KEYS or wantArgs ~= #ARGV then
  return redis.error_reply('LAYOUT ' .. #KEYS .. ' keys and ' .. #ARGV .. ' args, want ' .. wantKeys .. ' and ' .. wantArgs)
end
-- the TTLs as given, for EXPIRE, and as numbers, to compare
local doneTTLArg, resultTTLArg = doneTTL, resultTTL
doneTTL, resultTTL = tonumber(doneTTL), tonumber(resultTTL)
local mset, finished, index = {}, {}, {}
-- the records finished for the done retention, which the sweep of the
-- finished log drops (see commitEpilogue)
local toSweep = {}
local jobPrefix = string.sub(epochKey, 1, -6) .. 'job:'
-- the millisecond of the finished log's entry (see commitEpilogue): the
-- later of Redis's time and the last entry's, as XADD's '*' would take
local logMs = ''
if count[finishSec] + count[revokeSec] + count[unwaitSec] > 0 then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = redis.call('XREVRANGE', finishedKey, '+', '-', 'COUNT', 1)[1]
  if last then
    local lastMs = tonumber(string.match(last[1], '^%d+'))
    if lastMs > ms then ms = lastMs end
  end
  logMs = string.format('%.0f', ms)
end
-- finishes a job as cancelled, unless it finished before, and settles its cancel
local function cancelJob(recKey, id, attempts, handler, key, submitted)
  if redis.call('HSETNX', recKey, 's', 'c' .. logMs .. ' ' .. attempts .. ' 0') == 1 then
    if doneTTL > 0 then toSweep[#toSweep + 1] = recKey end
    finished[#finished + 1] = 'c' .. id .. ' ' .. submitted .. ' ' .. #handler .. ' ' .. #key .. ' ' .. handler .. key
  end
  redis.call('ZREM', cancelsKey, id)
end
`

// commitEpilogue logs the jobs the commit finished, as one entry of the
// partition's finished log (see finished_log.go), at logMs: the item of
// each job, space-separated. The finish section's jobs come laid out as
// one arg (finishedLog: the section finishes them all or refuses the
// batch), the jobs cancelled by a revoke or an unwait after them. The
// entry also says which records to drop once the done retention is over
// (sweepFinishedScript), and entries go only after that sweep. Should
// the stream refuse logMs (its last id past its last entry's, which no
// commit leaves), the entry is added at Redis's time: the jobs' records
// then do not find it, and show no handler, key or submission time, and
// the sweep would not drop them, so they expire by themselves.
const commitEpilogue = `
if #finished > 0 then
  if finishedLog ~= '' then table.insert(finished, 1, finishedLog) end
  finishedLog = table.concat(finished, ' ')
end
if finishedLog ~= '' then
  local added = redis.pcall('XADD', finishedKey, logMs .. '-*', 'g', finishedLog)
  if type(added) == 'table' and added.err then
    added = redis.pcall('XADD', finishedKey, '*', 'g', finishedLog)
    if type(added) == 'table' and added.err then return added end
    for _, rec in ipairs(toSweep) do redis.call('EXPIRE', rec, doneTTLArg) end
  end
end
`

// commitLua writes the commit script from the tables above.
func commitLua() string {
	var b strings.Builder
	b.WriteString(luaPackedKey)
	names := make([]string, len(commitFixedKeys))
	for i, fk := range commitFixedKeys {
		names[i] = fk.name
	}
	luaBind(&b, "", names, "KEYS", "")
	luaBind(&b, "", commitHeaderArgs[:], "ARGV", "")
	fmt.Fprintf(&b, "local ackChunk = %d\n", ackChunk)
	b.WriteString("-- the keys and args of one item of each section\nlocal shape = {\n")
	for _, s := range commitSections {
		fmt.Fprintf(&b, "  {%d, %d}, -- %s\n", len(s.keys), len(s.args), s.name)
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "local header, k, a = %d, %d, %d\n", numHeaderArgs, len(commitFixedKeys)+1, numHeaderArgs+numSections+1)
	fmt.Fprintf(&b, "local finishSec, revokeSec, unwaitSec = %d, %d, %d\n", secFinish+1, secRevoke+1, secUnwait+1)
	b.WriteString(commitPrologue)
	for i, s := range commitSections {
		fmt.Fprintf(&b, "-- %s\n", s.name)
		if s.before != "" {
			b.WriteString(luaIndent(s.before, ""))
		}
		fmt.Fprintf(&b, "for _ = 1, count[%d] do\n", i+1)
		luaBind(&b, "  ", s.keys, "KEYS", "k")
		luaBind(&b, "  ", s.args, "ARGV", "a")
		b.WriteString(luaIndent(s.each, "  "))
		switch {
		case len(s.keys) > 0:
			fmt.Fprintf(&b, "  k, a = k + %d, a + %d\nend\n", len(s.keys), len(s.args))
		default:
			fmt.Fprintf(&b, "  a = a + %d\nend\n", len(s.args))
		}
		if s.after != "" {
			fmt.Fprintf(&b, "if count[%d] > 0 then\n%send\n", i+1, luaIndent(s.after, "  "))
		}
	}
	b.WriteString(commitEpilogue)
	b.WriteString("redis.call('SET', commitsKey, grant .. ' ' .. (commits + 1))\nreturn commits + 1\n")
	return b.String()
}

// luaBind writes "local n1, n2 = T[base], T[base + 1]", or with no base
// "local n1, n2 = T[1], T[2]".
func luaBind(b *strings.Builder, indent string, names []string, table, base string) {
	if len(names) == 0 {
		return
	}
	vals := make([]string, len(names))
	for i := range names {
		switch {
		case base == "":
			vals[i] = table + "[" + strconv.Itoa(i+1) + "]"
		case i == 0:
			vals[i] = table + "[" + base + "]"
		default:
			vals[i] = table + "[" + base + " + " + strconv.Itoa(i) + "]"
		}
	}
	fmt.Fprintf(b, "%slocal %s = %s\n", indent, strings.Join(names, ", "), strings.Join(vals, ", "))
}

func luaIndent(code, indent string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimPrefix(code, "\n"), "\n") {
		b.WriteString(indent + l + "\n")
	}
	return b.String()
}

// commitScript applies one partition batch under a fencing grant: all of
// it or, if the grant is stale, the guard refuses or a job in it is
// already finished, none of it. Its KEYS and ARGV are laid out from
// commitSections (see the top of this file).
// Returns the commits made under the grant, this one included, or an
// error "FENCED <current>", "LOST <count>", "ALREADY <id>", "BUSY <what>"
// or "LAYOUT <what>".
var commitScript = redis.NewScript(commitLua())

// errCommitLayout means an item was given to a commit section with
// another shape than the section's: a bug, caught before Redis sees it.
var errCommitLayout = errors.New("commit item does not fit its section")

// commitArgs gathers a commit's items section by section, so they may be
// added in any order, and lays out the script's KEYS and ARGV.
type commitArgs struct {
	keys  [numSections][]string
	args  [numSections][]any
	count [numSections]int
	err   error
}

// add appends one item to section sec: its keys and args in the order of
// the section's names.
func (c *commitArgs) add(sec int, keys []string, args ...any) {
	s := &commitSections[sec]
	if len(keys) != len(s.keys) || len(args) != len(s.args) {
		if c.err == nil {
			c.err = fmt.Errorf("%w: %s item with %d keys and %d args, want %d and %d",
				errCommitLayout, s.name, len(keys), len(args), len(s.keys), len(s.args))
		}
		return
	}
	c.keys[sec] = append(c.keys[sec], keys...)
	c.args[sec] = append(c.args[sec], args...)
	c.count[sec]++
}

// reserve makes room for n more items of section sec.
func (c *commitArgs) reserve(sec, n int) {
	s := &commitSections[sec]
	c.keys[sec] = slices.Grow(c.keys[sec], n*len(s.keys))
	c.args[sec] = slices.Grow(c.args[sec], n*len(s.args))
}

// layout is the script's KEYS and ARGV: partition k's fixed keys and the
// header, then the counts and items of every section.
func (c *commitArgs) layout(k keys.Partition, header [numHeaderArgs]any) ([]string, []any, error) {
	if c.err != nil {
		return nil, nil, c.err
	}
	nk, na := len(commitFixedKeys), numHeaderArgs+numSections
	for i := range commitSections {
		nk, na = nk+len(c.keys[i]), na+len(c.args[i])
	}
	ks := make([]string, 0, nk)
	for _, fk := range commitFixedKeys {
		ks = append(ks, fk.key(k))
	}
	args := make([]any, 0, na)
	args = append(args, header[:]...)
	for _, n := range c.count {
		args = append(args, n)
	}
	for i := range commitSections {
		ks = append(ks, c.keys[i]...)
		args = append(args, c.args[i]...)
	}
	return ks, args, nil
}
