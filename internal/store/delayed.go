package store

import (
	"context"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/redis/go-redis/v9"
)

// releaseDueLua is a Lua function that moves the delayed jobs of a
// partition due at now, up to max of them (-1: all), to the tail of its
// stream, in the order they are due, and returns how many it moved. A
// delayed job's body is its packed stream entry (see Enqueue), so moving
// it is a copy. The release script of the owner runs it, and so do the
// scripts that append jobs to a stream (enqueue, relay) before they
// append: a job submitted after a delayed job of its key became due lands
// behind it even if the owner has not moved it yet.
const releaseDueLua = `
local function releaseDue(delayed, bodies, stream, now, max)
  local ids = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local b = redis.call('HGET', bodies, id)
    if b then redis.call('XADD', stream, '*', 'j', b) end
    redis.call('HDEL', bodies, id)
    redis.call('ZREM', delayed, id)
  end
  return #ids
end
`

// releaseScript moves due delayed jobs to the tail of the partition's
// stream, under the owner's epoch: a delayed job counts as submitted when
// it becomes due, so it never holds its key while it waits.
//
// A partition frozen for its split releases nothing: its queue must stay
// drained while what it holds is copied to its children.
//
// KEYS[1] epoch, KEYS[2] delayed set, KEYS[3] bodies, KEYS[4] stream,
// KEYS[5] split mark.
// ARGV[1] the owner's grant (see lease.Grant), ARGV[2] now unix ms, ARGV[3] most jobs to move.
// Returns the number of jobs moved, or an error "FENCED <current>".
var releaseScript = redis.NewScript(releaseDueLua + `
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(cur))
end
local sp = redis.call('GET', KEYS[5])
if sp and (string.sub(sp, 1, 1) == 'f' or string.sub(sp, 1, 1) == 'c') then return 0 end
return releaseDue(KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3])
`)

// ReleaseDue moves up to max delayed jobs of partition that are due at
// now (unix ms) into its stream, and returns how many it moved.
func (s *Store) ReleaseDue(ctx context.Context, partition int, grant lease.Grant, now int64, max int64) (int, error) {
	k := keys.For(partition)
	n, err := releaseScript.Run(ctx, s.rdb, []string{k.Epoch(), k.Delayed(), k.Bodies(), k.Queue(), k.Split()}, grant.String(), itoa(now), max).Int()
	if err != nil {
		return 0, fenceErr("release delayed jobs", partition, grant, err)
	}
	return n, nil
}

// delayedBody is what a delayed job keeps in the bodies hash: its stream
// entry as it will be when due, when it counts as submitted.
func delayedBody(j *Job) []byte {
	d := *j
	d.SubmittedAt, d.NotBefore = j.NotBefore, 0
	return packJob(&d)
}
