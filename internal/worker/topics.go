package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxSubscriptions bounds the subscriptions one worker serves at once:
// each holds a Redis connection of the topics' own pool while it waits.
const maxSubscriptions = 256

// maxSubscribedTopics bounds the topics of one subscription.
const maxSubscribedTopics = 32

// subscribeBlock is how long one read of a subscription waits for a
// message before it reads again (and notices a subscriber gone).
const subscribeBlock = 2 * time.Second

// subscribeCount is how many messages one read takes from each stream.
const subscribeCount = 256

// topicStore is what subscriptions need of the store.
type topicStore interface {
	ReadTopics(ctx context.Context, from []store.TopicCursor, count int64, block time.Duration) ([]store.TopicMessage, error)
	Now(ctx context.Context) (int64, error)
}

// topicServer serves subscriptions: it reads the topics' streams of every
// partition from the subscriber's positions and sends what it reads. Any
// worker serves any subscription; it writes nothing.
type topicServer struct {
	log        *slog.Logger
	partitions int
	store      topicStore
	slots      chan struct{}
}

func newTopicServer(log *slog.Logger, partitions int, st topicStore) *topicServer {
	return &topicServer{log: log, partitions: partitions, store: st, slots: make(chan struct{}, maxSubscriptions)}
}

// Subscribe serves the Subscribe RPC.
func (a *API) Subscribe(req *workerpb.SubscribeRequest, stream workerpb.Worker_SubscribeServer) error {
	return a.topics.serve(req, stream)
}

// cursors is where a subscription is in every stream it reads.
type cursors struct {
	at  []store.TopicCursor
	idx map[string]int // "topic\x00partition" → index in at
}

func cursorKey(topic string, partition int) string { return topic + "\x00" + strconv.Itoa(partition) }

// subscribeCursors checks a request and places it in every partition of
// each topic: at its position there, else at its start.
func (t *topicServer) subscribeCursors(req *workerpb.SubscribeRequest, fromMs int64) (*cursors, error) {
	if len(req.Topics) == 0 {
		return nil, fmt.Errorf("subscribe: name at least one topic")
	}
	if len(req.Topics) > maxSubscribedTopics {
		return nil, fmt.Errorf("subscribe: %d topics, over the limit of %d per subscription", len(req.Topics), maxSubscribedTopics)
	}
	c := &cursors{idx: map[string]int{}}
	start := store.TopicStart(fromMs)
	for _, topic := range req.Topics {
		if err := plugins.CheckTopic(topic); err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		for p := range t.partitions {
			k := cursorKey(topic, p)
			if _, dup := c.idx[k]; dup {
				break // the topic named twice
			}
			c.idx[k] = len(c.at)
			c.at = append(c.at, store.TopicCursor{Topic: topic, Partition: p, ID: start})
		}
	}
	for _, pos := range req.Positions {
		i, ok := c.idx[cursorKey(pos.Topic, int(pos.Partition))]
		if !ok {
			return nil, fmt.Errorf("subscribe: position in topic %q partition %d, which the subscription does not read (partitions 0-%d)",
				pos.Topic, pos.Partition, t.partitions-1)
		}
		if !validStreamID(pos.Id) {
			return nil, fmt.Errorf("subscribe: position %q in topic %q partition %d is not a message id (MS-SEQ)", pos.Id, pos.Topic, pos.Partition)
		}
		c.at[i].ID = pos.Id
	}
	return c, nil
}

func validStreamID(id string) bool {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(a, 10, 64)
	_, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil
}

func (t *topicServer) serve(req *workerpb.SubscribeRequest, stream workerpb.Worker_SubscribeServer) error {
	ctx := stream.Context()
	fromMs := req.FromMs
	if fromMs <= 0 {
		now, err := t.store.Now(ctx)
		if err != nil {
			return status.Errorf(codes.Unavailable, "subscribe: %v", err)
		}
		fromMs = now
	}
	cur, err := t.subscribeCursors(req, fromMs)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	select {
	case t.slots <- struct{}{}:
		defer func() { <-t.slots }()
	default:
		return status.Errorf(codes.ResourceExhausted, "subscribe: this worker serves %d subscriptions already; try another", maxSubscriptions)
	}
	if err := stream.Send(&workerpb.TopicMessage{FromMs: fromMs}); err != nil {
		return err
	}
	for {
		msgs, err := t.store.ReadTopics(ctx, cur.at, subscribeCount, subscribeBlock)
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "subscribe: %v", err)
		}
		for _, m := range msgs {
			err := stream.Send(&workerpb.TopicMessage{Topic: m.Topic, Partition: int32(m.Partition), Id: m.ID, Message: m.Message, JobId: m.JobID})
			if err != nil {
				return err
			}
			cur.at[cur.idx[cursorKey(m.Topic, m.Partition)]].ID = m.ID
		}
	}
}
