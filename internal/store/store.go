package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/routing"
	"github.com/redis/go-redis/v9"
)

// ErrPartitionMismatch means the cluster in Redis was created with another
// partition count than the one this process was given.
var ErrPartitionMismatch = errors.New("partition count mismatch")

// Config sets retention of what the job path leaves behind. Every key the
// job path writes has a retention or a cap; these are the ones a user sets.
type Config struct {
	Partitions int
	// Routing, when set, is the live partition layout (it changes during a
	// reshard); Partitions is then only the count a new cluster starts with.
	Routing *routing.Table
	// DoneRetention is the dedup window: how long a finished job id is
	// remembered, so a job submitted, emitted or relayed again with the
	// same id within it is not applied twice. A relay mark lives as long
	// past the last relay of its outbox entry.
	DoneRetention time.Duration
	// ResultRetention is how long a job's result is kept. It lives in the
	// job's record, so the record, and the dedup of its id, lasts the
	// longer of the two.
	ResultRetention time.Duration
	Audit           bool  // record (epoch, job id) of every commit
	AuditMax        int64 // audit entries kept per partition (about: trimmed by whole stream nodes)
	// DeadRetention and DeadMax bound the dead letters of a partition: the
	// owner drops the oldest past either (see TrimDead).
	DeadRetention time.Duration
	DeadMax       int64
	// WaitReplicas, when above 0, makes every enqueue and commit wait (Redis
	// WAIT, on the connection that wrote) until that many replicas have it,
	// for at most WaitTimeout; fewer in time is ErrNotReplicated. For one
	// primary with replicas (Sentinel or plain replication), so that a
	// replica promoted after a failover has every acknowledged write.
	WaitReplicas int
	WaitTimeout  time.Duration
	// MaxQueueDepth, above 0, bounds a partition's depth (its queued,
	// delayed, parked and waiting jobs) at submit: a submission that would
	// pass it is refused with ErrQueueFull, and the client sends it again
	// later. Jobs emitted by committed jobs, and retries, are not refused.
	MaxQueueDepth int64
	// TopicRetention is how long a published message is kept in its
	// topic's stream, for subscribers that resume after a broken
	// connection; a topic nobody publishes to goes after it too.
	TopicRetention time.Duration
}

// DefaultConfig returns the retention a user would expect: a day for ids
// and results, a week for dead letters.
func DefaultConfig() Config {
	return Config{Partitions: 64, DoneRetention: 24 * time.Hour, ResultRetention: 24 * time.Hour,
		AuditMax: 100_000, DeadRetention: 7 * 24 * time.Hour, DeadMax: 10_000, MaxQueueDepth: DefaultMaxQueueDepth,
		TopicRetention: time.Hour}
}

// DefaultMaxQueueDepth is generous: a day's backlog of a busy partition
// fits, while a runaway bulk load stops at about 100 MB of Redis per
// partition instead of filling it.
const DefaultMaxQueueDepth = 100_000

// Validate explains retentions that cannot work. Redis keeps TTLs in
// whole seconds, so windows are at least a second.
func (c Config) Validate() error {
	var errs []error
	if c.DoneRetention < time.Second {
		errs = append(errs, fmt.Errorf("dedup window (%v) must be at least 1s: a finished job id is remembered that long, and a job sent again after it would run again", c.DoneRetention))
	}
	if c.ResultRetention < time.Second {
		errs = append(errs, fmt.Errorf("result retention (%v) must be at least 1s (a result is kept at least as long as the dedup window anyway)", c.ResultRetention))
	}
	if c.Audit && c.AuditMax < 1 {
		errs = append(errs, fmt.Errorf("audit cap (%d entries per partition) must be at least 1 when auditing", c.AuditMax))
	}
	if c.DeadRetention < time.Second {
		errs = append(errs, fmt.Errorf("dead-letter retention (%v) must be at least 1s", c.DeadRetention))
	}
	if c.DeadMax < 1 {
		errs = append(errs, fmt.Errorf("the cap on dead letters per partition (%d) must be at least 1", c.DeadMax))
	}
	if c.TopicRetention < time.Millisecond {
		errs = append(errs, fmt.Errorf("topic retention (%v) must be at least 1ms: a published message is kept that long for subscribers that resume", c.TopicRetention))
	}
	if c.WaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("replicas to wait for must be 0 (off) or more, got %d", c.WaitReplicas))
	}
	if c.MaxQueueDepth < 0 {
		errs = append(errs, fmt.Errorf("max queue depth must be 0 (no limit) or more, got %d", c.MaxQueueDepth))
	}
	if c.WaitReplicas > 0 && c.WaitTimeout <= 0 {
		errs = append(errs, fmt.Errorf("waiting for %d replicas needs a positive wait timeout", c.WaitReplicas))
	}
	return errors.Join(errs...)
}

// ErrNotReplicated means a write reached the primary but not as many
// replicas as Config.WaitReplicas within Config.WaitTimeout. The write may
// still be lost by a failover; a submit reports it as unavailable, so the
// client sends it again under the same ids.
var ErrNotReplicated = errors.New("write not acknowledged by the replicas in time")

// Store is the Redis side of the job path.
type Store struct {
	rdb     redis.UniversalClient
	cfg     Config
	commits commitsSeen
	// watchers is, per partition, whether entity watchers were there
	// lately (see watchedSection).
	watchers watchersSeen
	// types holds the entity types recorded in keys.EntityTypes by this
	// process.
	types sync.Map
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	return &Store{rdb: rdb, cfg: cfg}
}

// Partitions is P.
func (s *Store) Partitions() int { return s.partitionCount() }

// Client is the underlying Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis: %w", err)
	}
	return nil
}

// EnsurePartitions records P on first start and refuses another P later:
// changing it would move every key to another partition. Once a cluster
// was resharded (coordinator reshard), a worker with a Routing table
// takes the count from the cluster's layout instead, whatever it was
// started with.
func (s *Store) EnsurePartitions(ctx context.Context) error {
	created, err := s.rdb.HSetNX(ctx, keys.Meta, "partitions", s.cfg.Partitions).Result()
	if err != nil {
		return fmt.Errorf("store: record partition count: %w", err)
	}
	if created {
		// Every state of a cluster made by this release is indexed and its
		// type recorded: a reshard needs no scan to find them.
		if err := s.rdb.HSet(ctx, keys.Meta, "indexed", 1).Err(); err != nil {
			return fmt.Errorf("store: record partition count: %w", err)
		}
	}
	got, err := s.rdb.HGet(ctx, keys.Meta, "partitions").Int()
	if err != nil {
		return fmt.Errorf("store: read partition count: %w", err)
	}
	if got != s.cfg.Partitions {
		if r, _ := s.rdb.HGet(ctx, keys.Meta, "resharded").Result(); r != "" && s.cfg.Routing != nil {
			return nil // coordinator reshard changed it: the layout says how
		}
		return fmt.Errorf("%w: this cluster was created with %d partitions and this worker was started with %d; start it with --partitions %d (coordinator reshard changes a running cluster's count)",
			ErrPartitionMismatch, got, s.cfg.Partitions, got)
	}
	return nil
}

// Depth is the number of jobs waiting in a partition: its queue, its
// outbox and its delayed, parked and waiting jobs. An outbox entry holds
// all the jobs one commit emitted and counts as one: depth is zero exactly
// when nothing waits.
func (s *Store) Depth(ctx context.Context, partitions []int) (map[int]int64, error) {
	bs, err := s.Backlogs(ctx, partitions)
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(partitions))
	for p, b := range bs {
		out[p] = b.Depth()
	}
	return out, nil
}

// Backlog is what waits in one partition, by where it waits.
type Backlog struct {
	Queued int64 // stream entries not yet committed
	Outbox int64 // outbox entries not yet relayed (one per emitting commit)
	Bodies int64 // delayed, parked and waiting jobs
	Dead   int64 // dead letters kept (not part of Depth: nothing waits on them)
}

// Depth is the backlog's total (see Store.Depth).
func (b Backlog) Depth() int64 { return b.Queued + b.Outbox + b.Bodies }

// Backlogs reads the backlog of partitions, in one pipeline.
func (s *Store) Backlogs(ctx context.Context, partitions []int) (map[int]Backlog, error) {
	pipe := s.rdb.Pipeline()
	qs := make([]*redis.IntCmd, len(partitions))
	os := make([]*redis.IntCmd, len(partitions))
	bs := make([]*redis.IntCmd, len(partitions))
	ds := make([]*redis.IntCmd, len(partitions))
	for i, p := range partitions {
		k := keys.For(p)
		qs[i] = pipe.XLen(ctx, k.Queue())
		os[i] = pipe.XLen(ctx, k.Outbox())
		bs[i] = pipe.HLen(ctx, k.Bodies())
		ds[i] = pipe.ZCard(ctx, k.DeadIndex())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: depth: %w", err)
	}
	out := make(map[int]Backlog, len(partitions))
	for i, p := range partitions {
		out[p] = Backlog{Queued: qs[i].Val(), Outbox: os[i].Val(), Bodies: bs[i].Val(), Dead: ds[i].Val()}
	}
	return out, nil
}

// States reads committed entity states; missing ones are nil.
func (s *Store) States(ctx context.Context, entity string, keysOf []string, partitionOf func(string) int) ([][]byte, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keysOf))
	for i, key := range keysOf {
		cmds[i] = pipe.Get(ctx, keys.For(partitionOf(key)).State(entity, key))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read state: %w", err)
	}
	out := make([][]byte, len(keysOf))
	for i, c := range cmds {
		if b, err := c.Bytes(); err == nil {
			out[i] = b
		}
	}
	return out, nil
}

// evalPipelined runs scripts by SHA in one pipeline and, if Redis lost its
// script cache (a restart), loads them and runs the pipeline once more.
// With WaitReplicas set, the pipeline ends with a WAIT on its connection,
// and too few replicas in time is ErrNotReplicated (the cmds are returned
// all the same: the primary ran them).
func (s *Store) evalPipelined(ctx context.Context, scripts []*redis.Script, fill func(pipe redis.Pipeliner) []*redis.Cmd) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		cmds := fill(pipe)
		var wait *redis.Cmd
		if s.cfg.WaitReplicas > 0 && len(cmds) > 0 {
			wait = pipe.Do(ctx, "WAIT", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
		}
		_, err := pipe.Exec(ctx)
		if err == nil || attempt > 0 || !hasNoScript(cmds) {
			if wait != nil {
				got, werr := wait.Int64()
				if werr != nil {
					return cmds, fmt.Errorf("store: wait for replicas: %w", werr)
				}
				if got < int64(s.cfg.WaitReplicas) {
					return cmds, fmt.Errorf("store: %w: %d of %d replicas within %v", ErrNotReplicated, got, s.cfg.WaitReplicas, s.cfg.WaitTimeout)
				}
			}
			return cmds, nil
		}
		for _, sc := range scripts {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return nil, fmt.Errorf("store: load script: %w", err)
			}
		}
	}
}

// runScript runs one script; with WaitReplicas set, in a pipeline that
// waits for the replicas on the same connection (see evalPipelined).
func (s *Store) runScript(ctx context.Context, sc *redis.Script, ks []string, args ...any) *redis.Cmd {
	if s.cfg.WaitReplicas == 0 {
		return sc.Run(ctx, s.rdb, ks, args...)
	}
	cmds, err := s.evalPipelined(ctx, []*redis.Script{sc}, func(pipe redis.Pipeliner) []*redis.Cmd {
		return []*redis.Cmd{sc.EvalSha(ctx, pipe, ks, args...)}
	})
	if err != nil && (len(cmds) == 0 || cmds[0].Err() == nil) {
		c := redis.NewCmd(ctx)
		c.SetErr(err)
		return c
	}
	return cmds[0]
}

// isNoScript says Redis does not know a script (restarted, or flushed its
// script cache): loading it and running the call again fixes that.
func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

func hasNoScript(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			return true
		}
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// OldestOutbox is the time the oldest outbox entry of partitions was
// written (its stream id's milliseconds), zero when every outbox is empty:
// how far the relay is behind. One pipelined read.
func (s *Store) OldestOutbox(ctx context.Context, partitions []int) (time.Time, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(partitions))
	for i, p := range partitions {
		cmds[i] = pipe.XRangeN(ctx, keys.For(p).Outbox(), "-", "+", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return time.Time{}, fmt.Errorf("store: oldest outbox entry: %w", err)
	}
	var oldest int64
	for _, c := range cmds {
		for _, m := range c.Val() {
			ms, _, _ := strings.Cut(m.ID, "-")
			if v, err := strconv.ParseInt(ms, 10, 64); err == nil && (oldest == 0 || v < oldest) {
				oldest = v
			}
		}
	}
	if oldest == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(oldest), nil
}
