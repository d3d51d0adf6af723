package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// ClusterTopic is the built-in topic of cluster events: a subscription
// to it reads keys.Events.
const ClusterTopic = "$cluster"

// EventsKept is about how many cluster events the stream keeps.
const EventsKept = 10_000

// ClusterEvent is one thing that happened to the cluster, as JSON in the
// events stream: Kind and the fields that go with it.
type ClusterEvent struct {
	Kind      string `json:"kind"`                // member.joined, member.left, partition.moved, breaker.opened, breaker.closed, plugin.restarted, plugin.reloaded
	Member    string `json:"member,omitempty"`    // the member joined or left, the worker whose breaker or plugin it is
	Partition *int   `json:"partition,omitempty"` // the partition moved
	From      string `json:"from,omitempty"`      // its owner before ("" if none) / a breaker's peer
	To        string `json:"to,omitempty"`        // its owner now
	Epoch     int64  `json:"epoch,omitempty"`     // its new epoch
	Plugin    string `json:"plugin,omitempty"`
	Detail    string `json:"detail,omitempty"`
	ByWorker  string `json:"by"` // the worker that saw it
}

// PublishEvent appends e to the cluster events.
func (s *Store) PublishEvent(ctx context.Context, e ClusterEvent) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	err = s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Events, MaxLen: EventsKept, Approx: true, Values: []any{"m", b}}).Err()
	if err != nil {
		return fmt.Errorf("store: publish cluster event: %w", err)
	}
	return nil
}

// RecentEvents returns the last n cluster events, oldest first, with the
// unix ms each was recorded at.
func (s *Store) RecentEvents(ctx context.Context, n int64) ([]TopicMessage, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, keys.Events, "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read cluster events: %w", err)
	}
	out := make([]TopicMessage, 0, len(msgs))
	for i := len(msgs) - 1; i >= 0; i-- {
		out = appendTopicMessages(out, TopicCursor{Topic: ClusterTopic, Partition: -1}, msgs[i:i+1])
	}
	return out, nil
}
