package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// DeleteHandler is the handler name of the jobs that delete an entity's
// state (payload: the entity type). The owner applies them itself, in
// order with the key's other jobs, in its fenced commit; no plugin runs
// them. The "~" keeps the name out of any plugin's reach.
const DeleteHandler = "~delete"

// EntityKey is one key of an entity listing.
type EntityKey struct {
	Key       string
	Partition int
}

// ListEntities returns up to limit keys of entity type entity that have
// state and start with prefix, after cursor ("" from the start), and the
// cursor of the next page ("" when there is none).
//
// Each partition keeps an index of its entities' keys (a sorted set
// scored 0, see keys.Entities), written by the commits that write the
// states: the listing walks partition by partition, in key order within
// one, and the cursor is the partition and the last key returned. So a
// key present for the whole listing is returned exactly once, however
// many jobs commit meanwhile, which a SCAN of the keyspace cannot promise
// (it may return a key more than once); a key added or deleted during the
// listing may or may not be in it. A key whose state expired but is still
// indexed (the commits drop those a few at a time) is passed over.
func (s *Store) ListEntities(ctx context.Context, entity, prefix, cursor string, limit int) ([]EntityKey, string, error) {
	p, after, err := parseEntityCursor(cursor, s.partitionCount())
	if err != nil {
		return nil, "", err
	}
	max := "+"
	if prefix != "" {
		// Keys are UTF-8, whose bytes never reach 0xff.
		max = "(" + prefix + "\xff"
	}
	var out []EntityKey
	for ; p < s.partitionCount() && len(out) < limit; p, after = p+1, "" {
		k := keys.For(p)
		min := "[" + prefix
		if after != "" && after >= prefix {
			min = "(" + after
		}
		for len(out) < limit {
			want := limit - len(out)
			ks, err := s.rdb.ZRangeByLex(ctx, k.Entities(entity), &redis.ZRangeBy{Min: min, Max: max, Count: int64(want)}).Result()
			if err != nil {
				return nil, "", fmt.Errorf("store: list %s entities of partition %d: %w", entity, p, err)
			}
			if len(ks) == 0 {
				break
			}
			live, err := s.existing(ctx, k, entity, ks)
			if err != nil {
				return nil, "", err
			}
			for i, key := range ks {
				if live[i] {
					out = append(out, EntityKey{Key: key, Partition: p})
				}
			}
			after, min = ks[len(ks)-1], "("+ks[len(ks)-1]
			if len(ks) < want {
				break
			}
		}
		if len(out) >= limit {
			return out, entityCursor(p, after), nil
		}
	}
	if p >= s.partitionCount() {
		return out, "", nil
	}
	return out, entityCursor(p, ""), nil
}

// existing says which of the keys of entity in partition k have state.
func (s *Store) existing(ctx context.Context, k keys.Partition, entity string, ks []string) ([]bool, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ks))
	for i, key := range ks {
		cmds[i] = pipe.Exists(ctx, k.State(entity, key))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: list %s entities: %w", entity, err)
	}
	out := make([]bool, len(ks))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

// entityCursor encodes where a listing goes on: in partition p, after key
// (from its start when key is "").
func entityCursor(p int, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(p) + ":" + key))
}

func parseEntityCursor(c string, partitions int) (p int, after string, err error) {
	if c == "" {
		return 0, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", fmt.Errorf("%w %q: pass the next cursor an entity listing returned", ErrBadCursor, c)
	}
	ps, after, ok := strings.Cut(string(b), ":")
	p, err = strconv.Atoi(ps)
	if !ok || err != nil || p < 0 || p >= partitions {
		return 0, "", fmt.Errorf("%w %q: pass the next cursor an entity listing returned", ErrBadCursor, c)
	}
	return p, after, nil
}
