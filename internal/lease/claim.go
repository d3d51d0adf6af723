package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// claimScript grants a partition to a new holder if it is still held by
// the expected one. The epoch key holds the current grant, "epoch:nonce";
// the epoch is one more than the last one Redis remembers.
//
// KEYS[1] owner key, KEYS[2] epoch key
// ARGV[1] new holder's token, ARGV[2] expected current holder ("" = none),
// ARGV[3] the new grant's nonce
// Returns the new grant, or an error "HELD <token>".
var claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then
  return redis.error_reply('HELD ' .. cur)
end
local last = redis.call('GET', KEYS[2])
local epoch = 1
if last then epoch = (tonumber(string.match(last, '^%d+')) or 0) + 1 end
local grant = string.format('%d', epoch) .. ':' .. ARGV[3]
redis.call('SET', KEYS[2], grant)
redis.call('SET', KEYS[1], ARGV[1])
return grant
`)

// Grant is one grant of a partition to a worker: the fencing token every
// commit carries. The epoch counts grants; it goes back when Redis loses
// recent writes (a crash with fsync every second, a replica promoted
// before it had the last writes), and the next grant then repeats a
// number a live worker may still hold. The nonce, drawn at random for each
// grant, tells those two grants apart, so a commit under a grant that is
// no longer current is refused even then.
type Grant struct {
	Epoch int64
	Nonce string
}

// String is the grant as Redis stores and commit scripts compare it.
func (g Grant) String() string {
	if g.Nonce == "" {
		return strconv.FormatInt(g.Epoch, 10)
	}
	return strconv.FormatInt(g.Epoch, 10) + ":" + g.Nonce
}

// IsZero reports whether g names no grant.
func (g Grant) IsZero() bool { return g == Grant{} }

// ParseGrant reads a grant as stored in a partition's epoch key.
func ParseGrant(s string) (Grant, error) {
	num, nonce, _ := strings.Cut(s, ":")
	e, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return Grant{}, fmt.Errorf("lease: malformed grant %q", s)
	}
	return Grant{Epoch: e, Nonce: nonce}, nil
}

// newNonce draws a grant's nonce: 64 random bits, never reused in practice.
func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// releaseScript frees a partition if the caller still holds it, and tells
// the workers waiting for it, so the next owner claims without polling.
//
// KEYS[1] owner key; ARGV[1] caller's token, ARGV[2] events channel,
// ARGV[3] partition number. Returns 1 if released.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released ' .. ARGV[3])
  return 1
end
return 0
`)

// Holder describes who holds a partition now, and its last grant (kept
// when the partition is released, so the next grant counts on from it).
type Holder struct {
	Token string // "" when free
	Grant
}

// tokenSep separates a lease token's worker id from its nonce.
const tokenSep = "~"

// NewToken makes a lease token for worker id: the id and a fresh random
// nonce, so a restarted worker never holds its old lease.
func NewToken(id string) string {
	var b [6]byte
	rand.Read(b[:])
	return id + tokenSep + hex.EncodeToString(b[:])
}

// WorkerID is the worker id a lease token was made for ("" for "").
func WorkerID(token string) string {
	id, _, _ := strings.Cut(token, tokenSep)
	return id
}

// HolderOf reads the holder and epoch of a partition.
func HolderOf(ctx context.Context, rdb redis.UniversalClient, partition int) (Holder, error) {
	hs, err := HoldersOf(ctx, rdb, []int{partition})
	if err != nil {
		return Holder{}, err
	}
	return hs[partition], nil
}

// HoldersOf reads the holders and epochs of partitions, in one pipeline.
func HoldersOf(ctx context.Context, rdb redis.UniversalClient, partitions []int) (map[int]Holder, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(partitions))
	for i, p := range partitions {
		k := keys.For(p)
		cmds[i] = pipe.MGet(ctx, k.Owner(), k.Epoch())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("lease: read holders of %d partitions: %w", len(partitions), err)
	}
	out := make(map[int]Holder, len(partitions))
	for i, p := range partitions {
		vals := cmds[i].Val()
		var h Holder
		if s, ok := vals[0].(string); ok {
			h.Token = s
		}
		if s, ok := vals[1].(string); ok {
			g, err := ParseGrant(s)
			if err != nil {
				return nil, fmt.Errorf("lease: read holder of partition %d: %w", p, err)
			}
			h.Grant = g
		}
		out[p] = h
	}
	return out, nil
}

// Claim grants partition to token if its holder is still expected
// ("" for a free partition), and returns the new grant. It returns ErrHeld
// when someone else got there first.
func Claim(ctx context.Context, rdb redis.UniversalClient, partition int, token, expected string) (Grant, error) {
	k := keys.For(partition)
	s, err := claimScript.Run(ctx, rdb, []string{k.Owner(), k.Epoch()}, token, expected, newNonce()).Text()
	if err != nil {
		if strings.HasPrefix(err.Error(), "HELD") {
			return Grant{}, fmt.Errorf("lease: claim partition %d: %w (%s)", partition, ErrHeld, err.Error())
		}
		return Grant{}, fmt.Errorf("lease: claim partition %d: %w", partition, err)
	}
	return ParseGrant(s)
}

// Release frees partition if token still holds it, so the next owner can
// claim at once instead of waiting for the lease to expire.
func Release(ctx context.Context, rdb redis.UniversalClient, partition int, token string) (bool, error) {
	n, err := releaseScript.Run(ctx, rdb, []string{keys.For(partition).Owner()}, token, EventsChannel, partition).Int()
	if err != nil {
		return false, fmt.Errorf("lease: release partition %d: %w", partition, err)
	}
	return n == 1, nil
}
