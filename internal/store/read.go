package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// StartID reads a partition's stream from its beginning. Committed entries
// are deleted by the commit, so what remains is exactly what is not done.
const StartID = "0-0"

// Read does one blocking read across the streams of the given partitions,
// each from its cursor (the last stream id already taken), and returns up to
// count jobs per partition. No jobs before block elapses is not an error.
func (s *Store) Read(ctx context.Context, cursors map[int]string, count int64, block time.Duration) (map[int][]Job, error) {
	if len(cursors) == 0 {
		return nil, nil
	}
	if isCluster(s.rdb) {
		return s.readEach(ctx, cursors, count, block)
	}
	parts := make([]int, 0, len(cursors))
	for p := range cursors {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	args := make([]string, 0, 2*len(parts))
	for _, p := range parts {
		args = append(args, keys.For(p).Queue())
	}
	for _, p := range parts {
		args = append(args, cursors[p])
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: args, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read streams: %w", err)
	}
	out := make(map[int][]Job, len(res))
	for _, st := range res {
		p, err := partitionOfKey(st.Stream)
		if err != nil {
			return nil, err
		}
		jobs := make([]Job, len(st.Messages))
		for i, m := range st.Messages {
			jobs[i] = jobFromStream(p, m.ID, m.Values)
		}
		out[p] = jobs
	}
	return out, nil
}

// partitionOfKey parses N out of "corral:{pN}:...".
func partitionOfKey(key string) (int, error) {
	i := strings.Index(key, "{p")
	j := strings.Index(key, "}")
	if i < 0 || j < i {
		return 0, fmt.Errorf("store: not a partition key: %q", key)
	}
	return strconv.Atoi(key[i+2 : j])
}

// EntityRef names an entity.
type EntityRef struct{ Type, Key string }

// Snapshot is what a batch starts from: the entities' states, which of
// its job ids are already finished (and must not be applied again) and
// which keys are held by a parked job.
type Snapshot struct {
	States   map[EntityRef][]byte // nil value: no state yet
	Finished map[string]bool
	Held     map[string]bool
}

// Load reads the state of every entity the jobs touch, the status of each
// job id and the holds on their keys, in one round trip. entityOf maps a handler to its entity type.
func (s *Store) Load(ctx context.Context, partition int, jobs []Job, entityOf func(handler string) string) (Snapshot, error) {
	return s.load(ctx, partition, jobs, entityOf, true)
}

// LoadOptimistic is Load without the job statuses (Finished stays empty):
// a stream job is almost never finished already, and the commit script
// refuses a batch holding one (ErrAlreadyFinished), after which the caller
// loads again with Load. It saves Redis one command per job.
func (s *Store) LoadOptimistic(ctx context.Context, partition int, jobs []Job, entityOf func(handler string) string) (Snapshot, error) {
	return s.load(ctx, partition, jobs, entityOf, false)
}

func (s *Store) load(ctx context.Context, partition int, jobs []Job, entityOf func(handler string) string, statuses bool) (Snapshot, error) {
	k := keys.For(partition)
	pipe := s.rdb.Pipeline()
	refs := make([]EntityRef, 0, len(jobs))
	stateKeys := make([]string, 0, len(jobs))
	seen := make(map[EntityRef]bool, len(jobs))
	for _, j := range jobs {
		ref := EntityRef{Type: entityOf(j.Handler), Key: j.Key}
		if seen[ref] {
			continue
		}
		seen[ref] = true
		refs = append(refs, ref)
		stateKeys = append(stateKeys, k.State(ref.Type, ref.Key))
	}
	// One MGET for all states: the keys share the partition's hash tag.
	var statesCmd *redis.SliceCmd
	if len(stateKeys) > 0 {
		statesCmd = pipe.MGet(ctx, stateKeys...)
	}
	keyList := make([]string, 0, len(jobs))
	seenKey := map[string]bool{}
	for _, j := range jobs {
		if !seenKey[j.Key] {
			seenKey[j.Key] = true
			keyList = append(keyList, j.Key)
		}
	}
	var holdCmd *redis.SliceCmd
	if len(keyList) > 0 {
		holdCmd = pipe.HMGet(ctx, k.Holds(), keyList...)
	}
	var statusCmds []*redis.StringCmd
	if statuses {
		statusCmds = make([]*redis.StringCmd, len(jobs))
		for i, j := range jobs {
			statusCmds[i] = pipe.HGet(ctx, k.Job(j.ID), "s")
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Snapshot{}, fmt.Errorf("store: load partition %d: %w", partition, err)
	}
	snap := Snapshot{States: make(map[EntityRef][]byte, len(refs)), Finished: map[string]bool{}, Held: map[string]bool{}}
	if holdCmd != nil {
		for i, v := range holdCmd.Val() {
			if v != nil {
				snap.Held[keyList[i]] = true
			}
		}
	}
	var vals []any
	if statesCmd != nil {
		vals = statesCmd.Val()
	}
	for i, ref := range refs {
		var b []byte
		if i < len(vals) {
			if v, ok := vals[i].(string); ok {
				b = []byte(v)
			}
		}
		snap.States[ref] = b
	}
	for i, j := range jobs[:len(statusCmds)] {
		if st := recordStatus(statusCmds[i].Val()); st == statusDone || st == statusDead || st == statusRejected || st == statusCancelled {
			snap.Finished[j.ID] = true
		}
	}
	return snap, nil
}

// emittedStatuses fills in the emitted jobs of sts that have no record
// yet: from their parent's commit until their own, an emitted job waits
// in its parent's outbox or in its target's queue, and its parent's
// record, which counts the jobs it emitted, tells it is queued. Every
// partition is asked for the parents, in one pipeline.
func (s *Store) emittedStatuses(ctx context.Context, sts []JobStatus) error {
	type ask struct {
		i    int
		n    int
		recs []*redis.SliceCmd
	}
	var asks []ask
	pipe := s.rdb.Pipeline()
	for i, st := range sts {
		parent, n, ok := ParentID(st.ID)
		if st.Known || !ok {
			continue
		}
		a := ask{i: i, n: n, recs: make([]*redis.SliceCmd, s.partitionCount())}
		for p := range a.recs {
			a.recs[p] = pipe.HMGet(ctx, keys.For(p).Job(parent), "s", "e")
		}
		asks = append(asks, a)
	}
	if len(asks) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: read parents of emitted jobs: %w", err)
	}
	for _, a := range asks {
		for _, c := range a.recs {
			v := c.Val()
			if len(v) != 2 {
				continue
			}
			st, _ := v[0].(string)
			if recordStatus(st) != statusDone {
				continue
			}
			e, _ := v[1].(string)
			e = packedEmitted(st, e)
			if n, err := strconv.Atoi(e); err == nil && a.n < n {
				sts[a.i].Known = true
			}
			break
		}
	}
	return nil
}
