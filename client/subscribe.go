package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Message is a message a handler published (sdk Call.Publish), delivered
// once the job that published it committed.
type Message struct {
	Topic     string
	Partition int    // the partition of the job that published it
	ID        string // its id in the partition's stream of the topic: "<commit unix ms>-<seq>"
	JobID     string // the job that published it
	Data      []byte // as published: JSON
}

// Cursor is where a subscription is: after the messages committed before
// FromMs, and in each partition of a topic it has had messages from, after
// the last of them. Keep it to resume later; it is valid for as long as
// the workers keep messages (worker --topic-retention, an hour by default).
type Cursor struct {
	FromMs    int64
	Positions map[TopicPartition]string // last message id received
}

// TopicPartition names the stream of one topic in one partition.
type TopicPartition struct {
	Topic     string
	Partition int
}

// ClusterTopic is the built-in topic of cluster events: each message is
// a JSON object with "kind" (member.joined, member.left, partition.moved,
// partition.released, breaker.opened, breaker.closed, plugin.restarted,
// plugin.reloaded) and what goes with it ("member", "partition", "from",
// "to", "epoch", "plugin", "detail"), and "by", the worker that saw it.
const ClusterTopic = "$cluster"

// Subscription asks for the messages of Topics from From on, and for the
// committed states of the entity (Entity, Key) if set.
type Subscription struct {
	Topics []string
	// Entity and Key, when set, watch that entity: every state its jobs
	// commit, each job's in order, comes as a Message of topic
	// "$state:ENTITY:KEY" whose Data is the state. The commits publish
	// them only while some subscription watches the entity.
	Entity, Key string
	// From is where to start; the zero Cursor starts with the messages
	// committed from the moment the first worker answers.
	From Cursor
	// Connected, if set, is called each time the subscription is
	// established on a worker (first, and after a broken connection).
	Connected func(worker string, fromMs int64)
}

// subscribeSilence is how long a subscription waits for anything from
// its worker (a message, or the heartbeat it sends every 2 s) before it
// takes the worker for hung (stopped, cut off) and moves to another.
const subscribeSilence = 8 * time.Second

// subscribeBackoff is the wait before trying again once every worker
// refused or failed a subscription, doubling up to subscribeBackoffMax.
const (
	subscribeBackoff    = 50 * time.Millisecond
	subscribeBackoffMax = 2 * time.Second
)

// Subscribe delivers the messages published to sub.Topics to fn, each
// once, in commit order per topic and partition (so in job order per key),
// until ctx is done or fn returns an error, which Subscribe returns. When
// its connection to a worker breaks (the worker died, stopped or moved
// off), it subscribes again on another from where it was, so no message
// is lost or repeated. It returns at once on a request error (a bad topic
// name, a certificate not allowed to read).
//
// The cursor is updated as messages are delivered: on return,
// sub.From is where to resume.
func (c *Client) Subscribe(ctx context.Context, sub *Subscription, fn func(Message) error) error {
	if sub.From.Positions == nil {
		sub.From.Positions = map[TopicPartition]string{}
	}
	delay := subscribeBackoff
	for {
		ms, err := c.Members(ctx)
		var last error = err
		if err == nil {
			start := int(c.next.Add(1))
			for i := range ms {
				m := ms[(start+i)%len(ms)]
				got, err := c.subscribeOn(ctx, m.ID, m.Address, sub, fn)
				var userErr *handlerError
				switch {
				case errors.As(err, &userErr):
					return userErr.err
				case ctx.Err() != nil:
					return ctx.Err()
				case err != nil && !peer.Fault(err):
					return fmt.Errorf("client: subscribe on worker %s: %w", m.ID, err)
				}
				if got {
					delay = subscribeBackoff // it worked for a while: try again at once
				}
				last = fmt.Errorf("worker %s (%s): %w", m.ID, m.Address, err)
				c.log.Debug("client: subscription broke, moving to the next worker", "worker", m.ID, "err", err)
			}
		}
		c.log.Debug("client: no worker took the subscription; trying again", "in", delay, "err", last)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, subscribeBackoffMax)
	}
}

// handlerError is an error of the caller's fn, returned as is.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }

// subscribeOn runs the subscription on one worker until it breaks; got
// says whether the worker took it.
func (c *Client) subscribeOn(ctx context.Context, id, addr string, sub *Subscription, fn func(Message) error) (got bool, err error) {
	w, err := c.pool.Stream(addr)
	if err != nil {
		return false, status.Error(codes.Unavailable, err.Error())
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &workerpb.SubscribeRequest{Topics: sub.Topics, FromMs: sub.From.FromMs, Entity: sub.Entity, Key: sub.Key}
	for tp, pos := range sub.From.Positions {
		req.Positions = append(req.Positions, &workerpb.TopicPosition{Topic: tp.Topic, Partition: int32(tp.Partition), Id: pos})
	}
	stream, err := w.Subscribe(ctx, req)
	if err != nil {
		return false, err
	}
	// A worker that stops answering (SIGSTOP, a cut network) ends the
	// stream by silence: no message and no heartbeat.
	silence := time.AfterFunc(subscribeSilence, cancel)
	defer silence.Stop()
	for {
		m, err := stream.Recv()
		silence.Stop() // fn's time is not the worker's silence
		if err != nil && ctx.Err() != nil && parent.Err() == nil {
			return got, status.Errorf(codes.Unavailable, "worker %s sent nothing for %v", id, subscribeSilence)
		}
		if errors.Is(err, io.EOF) {
			return got, status.Error(codes.Unavailable, "the worker ended the subscription")
		}
		if err != nil {
			return got, err
		}
		if m.Topic == "" && m.FromMs == 0 {
			silence.Reset(subscribeSilence)
			continue // a heartbeat
		}
		if m.Topic == "" {
			got = true
			sub.From.FromMs = m.FromMs
			if sub.Connected != nil {
				sub.Connected(id, m.FromMs)
			}
			silence.Reset(subscribeSilence)
			continue
		}
		msg := Message{Topic: m.Topic, Partition: int(m.Partition), ID: m.Id, JobID: m.JobId, Data: m.Message}
		if err := fn(msg); err != nil {
			return got, &handlerError{err: err}
		}
		sub.From.Positions[TopicPartition{Topic: m.Topic, Partition: int(m.Partition)}] = m.Id
		silence.Reset(subscribeSilence)
	}
}
