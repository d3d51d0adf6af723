package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// ErrBusy means a direct commit found its partition changed since it
// looked: the job must go through the queue instead. Nothing was written.
var ErrBusy = errors.New("partition busy")

// directLookahead is how many queued entries a direct call looks through
// for jobs of its key; with more queued, it takes the queue.
const directLookahead = 16

// Guard makes a commit refuse (ErrBusy) unless its job may still skip
// the queue and ran on the current state: no job of its key queued (the
// commit looks through the queue's first entries itself, and refuses if
// there are more), the key not held, no delayed job of the partition due
// (it counts as submitted, and the owner has not moved it into the queue
// yet), the entity's state as given, and the job's id unused, which the
// commit then records as the job's.
type Guard struct {
	Entity   EntityRef // the job's entity; its Key is the job's key
	HasState bool
	State    []byte
	ID, Hash string
}

// NewGuard is the guard of a direct call of job that ran on state
// (has: the entity had one).
func NewGuard(job Job, entity string, state []byte, has bool) *Guard {
	return &Guard{Entity: EntityRef{Type: entity, Key: job.Key}, HasState: has, State: state,
		ID: job.ID, Hash: job.ContentHash()}
}

// ViewForCall looks at job's partition for a direct call: one pipelined
// read of the queue's head, the key's hold, the due delayed jobs, the
// entity's state and the job's record. It returns the guard to commit the
// call with, holding the state to run it on, or nil when the job must take
// the queue: a job of its key is queued, parked or waiting (or too many
// jobs are queued to tell), a delayed job is due, or its id was used
// before. The commit's guard checks all of it
// again; looking first spares a plugin call that could not commit.
func (s *Store) ViewForCall(ctx context.Context, job Job, entity string) (*Guard, error) {
	k := keys.For(job.Partition)
	ref := EntityRef{Type: entity, Key: job.Key}
	pipe := s.rdb.Pipeline()
	head := pipe.XRangeN(ctx, k.Queue(), "-", "+", directLookahead+1)
	held := pipe.HExists(ctx, k.Holds(), job.Key)
	due := pipe.ZRangeByScore(ctx, k.Delayed(), &redis.ZRangeBy{Min: "-inf", Max: itoa(time.Now().UnixMilli()), Count: 1})
	state := pipe.Get(ctx, k.State(ref.Type, ref.Key))
	rec := pipe.Exists(ctx, k.Job(job.ID))
	split := pipe.Get(ctx, k.Split())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: view partition %d for a call: %w", job.Partition, err)
	}
	entries := head.Val()
	if len(entries) > directLookahead || held.Val() || len(due.Val()) > 0 || rec.Val() > 0 {
		return nil, nil
	}
	if m := split.Val(); m != "" && (m[0] != 'd' || m[1:] != strconv.Itoa(s.routes().Modulus(job.Partition))) {
		return nil, nil // being split, or split since the caller routed: the queue path routes it again
	}
	for _, m := range entries {
		if jobFromStream(job.Partition, m.ID, m.Values).Key == job.Key {
			return nil, nil
		}
	}
	b, err := state.Bytes()
	return NewGuard(job, entity, b, err == nil), nil
}
