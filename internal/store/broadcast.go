package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// A broadcast record is one byte of status, then what the run answered.
const (
	broadcastRunning = 'r'
	broadcastDone    = 'd'
)

// BroadcastRecord is what a member recorded of a broadcast id.
type BroadcastRecord struct {
	Done   bool   // it ran to the end; else it started and never reported
	Result []byte // what it answered, when Done
}

// ClaimBroadcast records that member starts broadcast id, kept for
// retention. When the id was claimed before, it returns false and the
// record found.
func (s *Store) ClaimBroadcast(ctx context.Context, member, id string, retention time.Duration) (bool, BroadcastRecord, error) {
	k := keys.Broadcast(member, id)
	ok, err := s.rdb.SetNX(ctx, k, string(broadcastRunning), retention).Result()
	if err != nil {
		return false, BroadcastRecord{}, fmt.Errorf("store: claim broadcast %s: %w", id, err)
	}
	if ok {
		return true, BroadcastRecord{}, nil
	}
	b, err := s.rdb.Get(ctx, k).Bytes()
	if errors.Is(err, redis.Nil) {
		// Expired between the two calls: claim it again.
		return s.ClaimBroadcast(ctx, member, id, retention)
	}
	if err != nil {
		return false, BroadcastRecord{}, fmt.Errorf("store: read broadcast %s: %w", id, err)
	}
	rec := BroadcastRecord{Done: len(b) > 0 && b[0] == broadcastDone}
	if rec.Done {
		rec.Result = b[1:]
	}
	return false, rec, nil
}

// FinishBroadcast records what member's run of broadcast id answered.
func (s *Store) FinishBroadcast(ctx context.Context, member, id string, result []byte, retention time.Duration) error {
	v := append([]byte{broadcastDone}, result...)
	if err := s.rdb.Set(ctx, keys.Broadcast(member, id), v, retention).Err(); err != nil {
		return fmt.Errorf("store: finish broadcast %s: %w", id, err)
	}
	return nil
}

// ForgetBroadcast drops member's claim of broadcast id, after a run that
// failed: the id may be sent again.
func (s *Store) ForgetBroadcast(ctx context.Context, member, id string) error {
	if err := s.rdb.Del(ctx, keys.Broadcast(member, id)).Err(); err != nil {
		return fmt.Errorf("store: forget broadcast %s: %w", id, err)
	}
	return nil
}
