package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// ErrBusy means a direct commit found its partition changed since it
// looked: the job must go through the queue instead. Nothing was written.
var ErrBusy = errors.New("partition busy")

// directLookahead is how many queued entries a direct call looks through
// for jobs of its key; with more queued, it takes the queue.
const directLookahead = 16

// CallView is what a direct call needs to know before it runs: whether its
// job may skip the queue, and the state it would run on.
type CallView struct {
	// Free is true when the job may run now without passing a job of its
	// key: none is queued, parked or waiting, and its id is new.
	Free  bool
	State []byte // nil: no state yet
	Guard *Guard // for CommitBatch, when Free
}

// Guard makes a commit refuse (ErrBusy) unless its partition is as a
// direct call saw it: no entry added to the stream since, the key not
// held, the entity's state unchanged, and the job's id still unused, which
// the commit then records as the job's.
type Guard struct {
	Key      string
	Entity   EntityRef
	LastID   string // the stream's last entry then, "" if it was empty
	HasState bool
	State    []byte
	ID, Hash string
}

// ViewForCall looks at job's partition for a direct call: one pipelined
// read of the queue's head, the key's hold, the entity's state and the
// job's record.
func (s *Store) ViewForCall(ctx context.Context, job Job, entity string) (CallView, error) {
	k := keys.For(job.Partition)
	ref := EntityRef{Type: entity, Key: job.Key}
	pipe := s.rdb.Pipeline()
	head := pipe.XRangeN(ctx, k.Queue(), "-", "+", directLookahead+1)
	held := pipe.HExists(ctx, k.Holds(), job.Key)
	state := pipe.Get(ctx, k.State(ref.Type, ref.Key))
	rec := pipe.Exists(ctx, k.Job(job.ID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return CallView{}, fmt.Errorf("store: view partition %d for a call: %w", job.Partition, err)
	}
	entries := head.Val()
	if len(entries) > directLookahead || held.Val() || rec.Val() > 0 {
		return CallView{}, nil
	}
	for _, m := range entries {
		if jobFromStream(job.Partition, m.ID, m.Values).Key == job.Key {
			return CallView{}, nil
		}
	}
	g := &Guard{Key: job.Key, Entity: ref, ID: job.ID, Hash: job.ContentHash()}
	if len(entries) > 0 {
		g.LastID = entries[len(entries)-1].ID
	}
	if b, err := state.Bytes(); err == nil {
		g.HasState, g.State = true, b
	}
	return CallView{Free: true, State: g.State, Guard: g}, nil
}
