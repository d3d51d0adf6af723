package worker

import (
	"context"
	"fmt"
	"github.com/corralhq/corral/internal/routing"
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
	Watch(ctx context.Context, partition int, entity, key string, ttl time.Duration) error
}

// watchTTL is how long an entity watch lasts unless renewed; a
// subscription renews it every watchTTL/3 while it lives, so the commits
// stop publishing the entity's states soon after its last watcher left.
const watchTTL = 15 * time.Second

// topicServer serves subscriptions: it reads the topics' streams of every
// partition from the subscriber's positions and sends what it reads. Any
// worker serves any subscription; it writes nothing.
type topicServer struct {
	log    *slog.Logger
	routes *routing.Table
	store  topicStore
	slots  chan struct{}
}

func newTopicServer(log *slog.Logger, routes *routing.Table, st topicStore) *topicServer {
	return &topicServer{log: log, routes: routes, store: st, slots: make(chan struct{}, maxSubscriptions)}
}

// Subscribe serves the Subscribe RPC. An entity to watch must be one a
// handler of the cluster writes.
func (a *API) Subscribe(req *workerpb.SubscribeRequest, stream workerpb.Worker_SubscribeServer) error {
	if req.Entity != "" || req.Key != "" {
		if err := checkEntity(req.Entity, a.intake.catalog.entities(a.intake.handlers())); err != nil {
			return status.Error(codes.InvalidArgument, "watch: "+err.Error())
		}
		if err := validateKey(req.Key); err != nil {
			return status.Error(codes.InvalidArgument, "watch: "+err.Error())
		}
	}
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
	if len(req.Topics) == 0 && req.Entity == "" {
		return nil, fmt.Errorf("subscribe: name at least one topic, or an entity to watch")
	}
	if len(req.Topics) > maxSubscribedTopics {
		return nil, fmt.Errorf("subscribe: %d topics, over the limit of %d per subscription", len(req.Topics), maxSubscribedTopics)
	}
	c := &cursors{idx: map[string]int{}}
	start := store.TopicStart(fromMs)
	for _, topic := range req.Topics {
		if topic == store.ClusterTopic {
			if _, dup := c.idx[cursorKey(topic, -1)]; !dup {
				c.idx[cursorKey(topic, -1)] = len(c.at)
				c.at = append(c.at, store.TopicCursor{Topic: topic, Partition: -1, ID: start})
			}
			continue
		}
		if err := plugins.CheckTopic(topic); err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		for p := range t.routes.Partitions() {
			k := cursorKey(topic, p)
			if _, dup := c.idx[k]; dup {
				break // the topic named twice
			}
			c.idx[k] = len(c.at)
			c.at = append(c.at, store.TopicCursor{Topic: topic, Partition: p, ID: start})
		}
	}
	if req.Entity != "" {
		p := t.routes.PartitionOf(req.Key)
		topic := store.StateTopic(req.Entity, req.Key)
		c.idx[cursorKey(topic, p)] = len(c.at)
		c.at = append(c.at, store.TopicCursor{Topic: topic, Partition: p, ID: start})
	}
	for _, pos := range req.Positions {
		i, ok := c.idx[cursorKey(pos.Topic, int(pos.Partition))]
		if !ok {
			return nil, fmt.Errorf("subscribe: position in topic %q partition %d, which the subscription does not read (partitions 0-%d)",
				pos.Topic, pos.Partition, t.routes.Partitions()-1)
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
	if req.Entity != "" {
		// Registered before the subscription is placed: every state
		// committed from its start on is published.
		p := t.routes.PartitionOf(req.Key)
		if err := t.store.Watch(ctx, p, req.Entity, req.Key, watchTTL); err != nil {
			return status.Errorf(codes.Unavailable, "subscribe: %v", err)
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go t.renewWatch(wctx, p, req.Entity, req.Key)
	}
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
		if len(msgs) == 0 {
			// A heartbeat: the subscriber tells a quiet topic from a
			// worker that stopped answering.
			if err := stream.Send(&workerpb.TopicMessage{}); err != nil {
				return err
			}
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

// renewWatch renews an entity watch until ctx ends.
func (t *topicServer) renewWatch(ctx context.Context, p int, entity, key string) {
	tick := time.NewTicker(watchTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.store.Watch(ctx, p, entity, key, watchTTL); err != nil && ctx.Err() == nil {
				t.log.Warn("renewing an entity watch failed; its states go unpublished if it lapses", "entity", entity, "key", key, "err", err)
			}
		}
	}
}
