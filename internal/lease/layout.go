package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Layout is the cluster's placement: which worker should own each
// partition. It lives in Redis (keys.Layout) so every worker places alike
// even though each placement follows the one before (sharding.Settle):
// workers change it by compare-and-swap on its version, and read it back.
type Layout struct {
	// Version counts the changes; 0 is the layout of a cluster that has
	// none yet.
	Version int64
	// Members are the workers placed, sorted by id, each with the lease
	// token of the process it was placed for.
	Members []Member
	// Owners gives each partition a member id, "" for none; its length is
	// the partition count the layout was made for.
	Owners []string
	// Nonce is drawn for each change and tells two layouts of one version
	// apart: a Redis restored to an earlier snapshot counts versions on
	// from an older one, so a version a worker has seen may come back with
	// other owners. "" for a layout stored by a release before it.
	Nonce string
}

// Same says whether l and o are the same change of the layout.
func (l Layout) Same(o Layout) bool { return l.Version == o.Version && l.Nonce == o.Nonce }

// Member is a placed worker and its lease token.
type Member struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// IDs returns the members' ids.
func (l Layout) IDs() []string {
	out := make([]string, len(l.Members))
	for i, m := range l.Members {
		out[i] = m.ID
	}
	return out
}

// stored is a layout as encoded in Redis: owners are member indexes, -1
// for none.
type stored struct {
	Members []Member `json:"members"`
	Owners  []int    `json:"owners"`
}

func (l Layout) encode() (string, error) {
	index := make(map[string]int, len(l.Members))
	for i, m := range l.Members {
		index[m.ID] = i
	}
	s := stored{Members: l.Members, Owners: make([]int, len(l.Owners))}
	for p, o := range l.Owners {
		i, ok := index[o]
		switch {
		case o == "":
			i = -1
		case !ok:
			return "", fmt.Errorf("lease: layout: partition %d's owner %q is not a member", p, o)
		}
		s.Owners[p] = i
	}
	b, err := json.Marshal(s)
	return string(b), err
}

func decodeLayout(version int64, data string) (Layout, error) {
	var s stored
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return Layout{}, fmt.Errorf("lease: layout version %d: %w", version, err)
	}
	l := Layout{Version: version, Members: s.Members, Owners: make([]string, len(s.Owners))}
	for p, i := range s.Owners {
		switch {
		case i == -1:
		case i < 0 || i >= len(s.Members):
			return Layout{}, fmt.Errorf("lease: layout version %d: partition %d names member %d of %d", version, p, i, len(s.Members))
		default:
			l.Owners[p] = s.Members[i].ID
		}
	}
	return l, nil
}

// LoadLayout reads the layout. When it is the one known (the same version
// and nonce; the caller has that one already) it reports unchanged and
// reads nothing more.
func LoadLayout(ctx context.Context, rdb redis.UniversalClient, known Layout) (l Layout, changed bool, err error) {
	id, err := rdb.HMGet(ctx, keys.Layout, "v", "n").Result()
	if err != nil {
		return Layout{}, false, fmt.Errorf("lease: read layout: %w", err)
	}
	vs, _ := id[0].(string)
	nonce, _ := id[1].(string)
	if vs == "" {
		return Layout{}, !known.Same(Layout{}), nil
	}
	v, err := strconv.ParseInt(vs, 10, 64)
	switch {
	case err != nil:
		return Layout{}, false, fmt.Errorf("lease: layout version %q: %w", vs, err)
	case known.Same(Layout{Version: v, Nonce: nonce}):
		return Layout{}, false, nil
	}
	vals, err := rdb.HMGet(ctx, keys.Layout, "v", "d", "n").Result()
	if err != nil {
		return Layout{}, false, fmt.Errorf("lease: read layout: %w", err)
	}
	vs, _ = vals[0].(string)
	data, _ := vals[1].(string)
	nonce, _ = vals[2].(string)
	if v, err = strconv.ParseInt(vs, 10, 64); err != nil {
		return Layout{}, false, fmt.Errorf("lease: layout version %q: %w", vs, err)
	}
	l, err = decodeLayout(v, data)
	l.Nonce = nonce
	return l, err == nil, err
}

// swapScript writes a layout only over the version it was made from, bumps
// the version and announces it on the events channel.
// KEYS[1] layout; ARGV[1] version replaced, ARGV[2] encoding, ARGV[3]
// events channel, ARGV[4] the new layout's nonce. Returns {1, new version}
// or {0, current version}.
var swapScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
v = v + 1
redis.call('HSET', KEYS[1], 'v', v, 'd', ARGV[2], 'n', ARGV[4])
redis.call('PUBLISH', ARGV[3], 'layout ' .. v)
return {1, v}
`)

// SwapLayout stores next in place of the layout of version next.Version.
// It reports false, storing nothing, when the layout changed since; read
// it again. The layout stored is returned with its new version.
func SwapLayout(ctx context.Context, rdb redis.UniversalClient, next Layout) (Layout, bool, error) {
	if !slices.IsSortedFunc(next.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) }) {
		return Layout{}, false, errors.New("lease: layout members are not sorted by id")
	}
	data, err := next.encode()
	if err != nil {
		return Layout{}, false, err
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return Layout{}, false, fmt.Errorf("lease: layout nonce: %w", err)
	}
	next.Nonce = hex.EncodeToString(nonce[:])
	res, err := swapScript.Run(ctx, rdb, []string{keys.Layout}, next.Version, data, EventsChannel, next.Nonce).Int64Slice()
	if err != nil {
		return Layout{}, false, fmt.Errorf("lease: store layout: %w", err)
	}
	if res[0] != 1 {
		return Layout{}, false, nil
	}
	next.Version = res[1]
	return next, true, nil
}
