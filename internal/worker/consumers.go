package worker

import (
	"context"
	"github.com/corralhq/corral/internal/routing"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
)

// consumeBlock is how long one read of a subscription waits for messages.
const consumeBlock = 250 * time.Millisecond

// consumeIdle is the pause of the consumer loop when it consumes nothing
// here (no subscription, or none whose home partition it owns).
const consumeIdle = time.Second

// consumers turn the messages of the topics handlers subscribe to
// (sdk.Subscribe) into their jobs. A subscription is consumed by the owner
// of its home partition, which keeps its place there: read from the
// place, enqueue one job per message with an id derived from the message
// (so a message read twice, after a crash or a move, is enqueued once),
// then save the place.
type consumers struct {
	log      *slog.Logger
	routes   *routing.Table
	handlers func() map[string]host.HandlerInfo
	grants   interface{ snapshot() map[int]lease.Grant }
	topics   interface { // over the subscriptions' own Redis pool
		ReadTopics(ctx context.Context, from []store.TopicCursor, count int64, block time.Duration) ([]store.TopicMessage, error)
		Now(ctx context.Context) (int64, error)
	}
	store interface {
		ConsumerAt(ctx context.Context, home int, handler, topic string) (store.ConsumerPlace, bool, error)
		SaveConsumer(ctx context.Context, home int, handler, topic string, place store.ConsumerPlace) error
		Enqueue(ctx context.Context, jobs []store.Job) ([]store.EnqueueResult, error)
	}
}

// subscription is one handler's subscription to one topic.
type subscription struct{ handler, topic string }

// homeOf is the partition that keeps a subscription's place.
func (cs *consumers) homeOf(s subscription) int {
	return cs.routes.PartitionOf("t~" + s.topic + "~" + s.handler)
}

// SubscriptionJobID is the id of the job that message id of topic's
// stream in partition p becomes.
func SubscriptionJobID(topic string, p int, id string) string {
	return "t~" + topic + "~" + strconv.Itoa(p) + "~" + id
}

func (cs *consumers) run(ctx context.Context) {
	for ctx.Err() == nil {
		owned := cs.grants.snapshot()
		var mine []subscription
		for name, h := range cs.handlers() {
			for _, t := range h.Subscribes {
				s := subscription{handler: name, topic: t}
				if _, ok := owned[cs.homeOf(s)]; ok && plugins.CheckTopic(t) == nil {
					mine = append(mine, s)
				}
			}
		}
		if len(mine) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(consumeIdle):
			}
			continue
		}
		sort.Slice(mine, func(i, j int) bool { return mine[i].handler+mine[i].topic < mine[j].handler+mine[j].topic })
		for _, s := range mine {
			if err := cs.step(ctx, s); err != nil && ctx.Err() == nil {
				cs.log.Warn("consuming a subscription failed; trying again", "handler", s.handler, "topic", s.topic, "err", err)
				time.Sleep(consumeBlock)
			}
		}
	}
}

// step moves one subscription on by what one read returns.
func (cs *consumers) step(ctx context.Context, s subscription) error {
	home := cs.homeOf(s)
	place, ok, err := cs.store.ConsumerAt(ctx, home, s.handler, s.topic)
	if err != nil {
		return err
	}
	if pp := cs.routes.Load().Parent("t~"+s.topic+"~"+s.handler, home, time.Now().UnixMilli()); !ok && pp >= 0 {
		// Its home moved by a reshard: go on from where the old home was.
		if place, ok, err = cs.store.ConsumerAt(ctx, pp, s.handler, s.topic); err != nil {
			return err
		}
	}
	if !ok {
		// First seen: it starts now.
		if place.FromMs, err = cs.topics.Now(ctx); err != nil {
			return err
		}
		if err := cs.store.SaveConsumer(ctx, home, s.handler, s.topic, place); err != nil {
			return err
		}
	}
	from := make([]store.TopicCursor, cs.routes.Partitions())
	for p := range from {
		id, ok := place.Positions[p]
		if !ok {
			id = store.TopicStart(place.FromMs)
		}
		from[p] = store.TopicCursor{Topic: s.topic, Partition: p, ID: id}
	}
	msgs, err := cs.topics.ReadTopics(ctx, from, 256, consumeBlock)
	if err != nil || len(msgs) == 0 {
		return err
	}
	now := time.Now().UnixMilli()
	keyPart := cs.routes.PartitionOf(s.topic)
	jobs := make([]store.Job, len(msgs))
	moved := map[int]string{}
	for i, m := range msgs {
		jobs[i] = store.Job{ID: SubscriptionJobID(s.topic, m.Partition, m.ID), Handler: s.handler, Key: s.topic,
			Payload: m.Message, Attempt: 1, SubmittedAt: now, Partition: keyPart}
		moved[m.Partition] = m.ID
	}
	res, err := cs.store.Enqueue(ctx, jobs)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err // the place stays: read again, enqueued once
		}
	}
	return cs.store.SaveConsumer(ctx, home, s.handler, s.topic, store.ConsumerPlace{FromMs: place.FromMs, Positions: moved})
}
