package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Publication is a message a done job published to a topic.
type Publication struct {
	Topic   string
	JobID   string
	Message []byte
}

// publishSection is the commit's part that publishes: each message goes to
// its topic's stream in the partition (so the commit stays in one slot),
// trimmed of what is older than the topic retention, and the stream
// expires with it when nothing more is published.
var publishSection = commitSection{
	name: "publish",
	keys: []string{"topicKey"},
	args: []string{"jobID", "message", "keepMs"},
	each: `
redis.call('XADD', topicKey, 'MINID', '~', tonumber(now) - tonumber(keepMs), '*', 'j', jobID, 'm', message)
redis.call('PEXPIRE', topicKey, keepMs)`,
}

// StateTopic is the built-in topic of an entity's committed states, which
// a commit publishes only while someone watches the entity (see Watch).
// Its "$" keeps it apart from the topics handlers publish to.
func StateTopic(entity, key string) string { return "$state:" + entity + ":" + key }

// watchSection is the commit's part that publishes watched states: each
// state a job of the batch wrote, in order, goes to the entity's state
// topic if the entity is watched. With nobody watching the partition it
// costs one EXISTS per commit. A job's state that a later job of the batch
// replaced carries its value; the last one (value "") is read back from
// the state the commit wrote, so it is not sent twice.
var watchSection = commitSection{
	name: "watch",
	keys: []string{"watchedKey", "stateKey", "topicKey"},
	args: []string{"value", "keepMs"},
	before: `
local watching = nil`,
	each: `
if watching == nil then watching = redis.call('EXISTS', watchedKey) == 1 end
if watching then
  local till = tonumber(redis.call('ZSCORE', watchedKey, stateKey))
  if till and till > tonumber(now) then
    if value == '' then value = redis.call('GET', stateKey) end
    redis.call('XADD', topicKey, 'MINID', '~', tonumber(now) - tonumber(keepMs), '*', 'm', value)
    redis.call('PEXPIRE', topicKey, keepMs)
  end
end`,
}

// watchedSection keeps the states of a batch off the wire while nobody
// watches its partition: a commit sends them only while its worker has
// seen watchers there lately (watchersSeen), and otherwise this one item,
// which refuses the batch, before anything is written, if the partition
// has watchers after all. The worker then sends it again with its states.
var watchedSection = commitSection{
	name: "watched",
	keys: []string{"watchedKey"},
	args: []string{"sent"},
	each: `
if sent == '0' and redis.call('EXISTS', watchedKey) == 1 then
  return redis.error_reply('WATCHED by a subscriber')
end`,
}

// watchersSeenFor is how long a worker sends its commits' states after it
// last found watchers in their partition; then one commit goes without,
// and is refused and sent again if they are still there.
const watchersSeenFor = 30 * time.Second

// watchersSeen is, per partition, until when its commits send their
// states for watchers.
type watchersSeen struct {
	mu    sync.Mutex
	until map[int]time.Time
}

func (w *watchersSeen) lately(p int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Now().Before(w.until[p])
}

func (w *watchersSeen) saw(p int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.until == nil {
		w.until = map[int]time.Time{}
	}
	w.until[p] = time.Now().Add(watchersSeenFor)
}

// deletedState is the message a watcher of an entity gets when a job
// deletes its state (coordinator entities delete).
var deletedState = []byte("null")

// addStateWatches adds every state a job of the batch wrote, in order,
// if the partition had watchers lately; else only the check that it has
// none.
func (s *Store) addStateWatches(c *commitArgs, p int, k keys.Partition, steps []StateWrite) {
	if len(steps) == 0 {
		return
	}
	if !s.watchers.lately(p) {
		c.add(secCheck, []string{k.Watched()}, "0")
		return
	}
	c.add(secCheck, []string{k.Watched()}, "1")
	keep := max(s.cfg.TopicRetention.Milliseconds(), 1)
	last := make(map[EntityRef]int, len(steps))
	for i, w := range steps {
		last[w.Entity] = i
	}
	for i, w := range steps {
		var v []byte
		switch {
		case w.Delete:
			v = deletedState // the state is gone: watchers see null
		case last[w.Entity] != i:
			v = w.Value
		}
		c.add(secWatch, []string{k.Watched(), k.State(w.Entity.Type, w.Entity.Key), k.Topic(StateTopic(w.Entity.Type, w.Entity.Key))}, v, keep)
	}
}

// watchScript registers or renews a watch of an entity's states until
// ARGV[2] (unix ms), dropping the lapsed ones, and keeps the set as long as
// its latest watch (every watch has the same TTL).
//
// KEYS[1] the partition's watched set, ARGV[1] the state's key, ARGV[2]
// the watch's end, ARGV[3] now (unix ms), ARGV[4] its TTL ms.
var watchScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// Watch registers interest in an entity's states for ttl: until then, the
// commits of the key's partition publish each state of it to its state
// topic. A watcher renews it while it watches.
func (s *Store) Watch(ctx context.Context, partition int, entity, key string, ttl time.Duration) error {
	k := keys.For(partition)
	now := time.Now().UnixMilli()
	err := s.runScript(ctx, watchScript, []string{k.Watched()}, k.State(entity, key), now+ttl.Milliseconds(), now, ttl.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("store: watch %s %q: %w", entity, key, err)
	}
	return nil
}

// addPublications adds the batch's messages to the commit, in order.
func (s *Store) addPublications(c *commitArgs, k keys.Partition, pubs []Publication) {
	keep := max(s.cfg.TopicRetention.Milliseconds(), 1)
	for _, p := range pubs {
		c.add(secTopic, []string{k.Topic(p.Topic)}, p.JobID, p.Message, keep)
	}
}

// TopicCursor is where a subscriber is in one partition's stream of a
// topic: after the message with stream id ID.
type TopicCursor struct {
	Topic     string
	Partition int
	ID        string
}

// TopicMessage is a published message as read back.
type TopicMessage struct {
	Topic     string
	Partition int
	ID        string // stream id in the partition's stream of the topic
	JobID     string
	Message   []byte
}

// streamOf is the stream a cursor reads: the topic's stream in its
// partition, or for the cluster topic (partition -1) the events stream.
func streamOf(c TopicCursor) string {
	if c.Partition < 0 {
		return keys.Events
	}
	return keys.For(c.Partition).Topic(c.Topic)
}

// topicPoll is how often a read on Redis Cluster looks for new messages:
// there one blocking read cannot wait on several slots.
const topicPoll = 10 * time.Millisecond

// ReadTopics returns the messages after the cursors, up to count per
// stream, waiting up to block for one when there are none. Messages of
// one stream come in its order; those of several streams by stream id,
// which is about commit order across partitions.
func (s *Store) ReadTopics(ctx context.Context, from []TopicCursor, count int64, block time.Duration) ([]TopicMessage, error) {
	if len(from) == 0 {
		return nil, nil
	}
	if isCluster(s.rdb) {
		return s.readTopicsEach(ctx, from, count, block)
	}
	streams := make([]string, 0, 2*len(from))
	for _, c := range from {
		streams = append(streams, streamOf(c))
	}
	for _, c := range from {
		streams = append(streams, c.ID)
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: count, Block: block}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read topics: %w", err)
	}
	byKey := make(map[string]TopicCursor, len(from))
	for _, c := range from {
		byKey[streamOf(c)] = c
	}
	var out []TopicMessage
	for _, st := range res {
		out = appendTopicMessages(out, byKey[st.Stream], st.Messages)
	}
	sortTopicMessages(out)
	return out, nil
}

// readTopicsEach is ReadTopics on Redis Cluster: one non-blocking read
// per partition (its topics share its slot), sent in one pipeline, again
// every topicPoll until a message comes or block has passed.
func (s *Store) readTopicsEach(ctx context.Context, from []TopicCursor, count int64, block time.Duration) ([]TopicMessage, error) {
	byPartition := map[int][]TopicCursor{}
	for _, c := range from {
		byPartition[c.Partition] = append(byPartition[c.Partition], c)
	}
	deadline := time.Now().Add(block)
	for {
		pipe := s.rdb.Pipeline()
		cmds := map[int]*redis.XStreamSliceCmd{}
		for p, cs := range byPartition {
			streams := make([]string, 0, 2*len(cs))
			for _, c := range cs {
				streams = append(streams, streamOf(c))
			}
			for _, c := range cs {
				streams = append(streams, c.ID)
			}
			cmds[p] = pipe.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: count, Block: -1})
		}
		pipe.Exec(ctx) // errors are per command, below; "no entries" is redis.Nil
		var out []TopicMessage
		for p, cmd := range cmds {
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("store: read topics of partition %d: %w", p, err)
			}
			for _, st := range cmd.Val() {
				for _, c := range byPartition[p] {
					if streamOf(c) == st.Stream {
						out = appendTopicMessages(out, c, st.Messages)
					}
				}
			}
		}
		if len(out) > 0 || !time.Now().Before(deadline) {
			sortTopicMessages(out)
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(topicPoll):
		}
	}
}

func appendTopicMessages(out []TopicMessage, c TopicCursor, msgs []redis.XMessage) []TopicMessage {
	for _, m := range msgs {
		job, _ := m.Values["j"].(string)
		body, _ := m.Values["m"].(string)
		out = append(out, TopicMessage{Topic: c.Topic, Partition: c.Partition, ID: m.ID, JobID: job, Message: []byte(body)})
	}
	return out
}

// sortTopicMessages orders messages by stream id, keeping each stream's
// own order.
func sortTopicMessages(ms []TopicMessage) {
	slices.SortStableFunc(ms, func(a, b TopicMessage) int {
		am, as := splitStreamID(a.ID)
		bm, bs := splitStreamID(b.ID)
		return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs), cmp.Compare(a.Partition, b.Partition))
	})
}

func splitStreamID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}

// TopicStart is the cursor of a subscription that starts at Unix ms
// fromMs: after every message committed before it.
func TopicStart(fromMs int64) string {
	if fromMs <= 0 {
		return "0-0"
	}
	return strconv.FormatInt(fromMs-1, 10) + "-18446744073709551615"
}

// Now is Redis's clock in Unix ms: the commits' clock, by which a
// subscription that starts now is placed.
func (s *Store) Now(ctx context.Context) (int64, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("store: time: %w", err)
	}
	return t.UnixMilli(), nil
}

// CloneClient is a client of the same Redis as rdb, with its own pool of
// poolSize connections: subscribers' blocking reads hold a connection
// each, and must not starve the job path of its own.
func CloneClient(rdb redis.UniversalClient, poolSize int) redis.UniversalClient {
	switch c := rdb.(type) {
	case *redis.Client:
		o := *c.Options()
		o.PoolSize = poolSize
		return redis.NewClient(&o)
	case *redis.ClusterClient:
		o := *c.Options()
		o.PoolSize = poolSize
		return redis.NewClusterClient(&o)
	}
	return rdb
}
