package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/redis/go-redis/v9"
)

// Errors of the schedule calls.
var (
	// ErrScheduleExists means a schedule of that name exists with another
	// definition.
	ErrScheduleExists = errors.New("a schedule of that name exists with another definition")
	ErrNoSchedule     = errors.New("no such schedule")
	// ErrScheduleChanged means a tick was refused because its schedule was
	// paused, resumed, deleted or replaced since its owner read it.
	ErrScheduleChanged = errors.New("schedule changed since it was read")
	// ErrTickMoved means a tick was refused because the schedule's last
	// tick is not the one its owner read: an earlier call of the owner
	// went through after all (its reply was lost).
	ErrTickMoved = errors.New("schedule's last tick moved since it was read")
)

// ScheduleRecord is a schedule's definition as stored, in the partition
// of its name.
type ScheduleRecord struct {
	Name    string          `json:"name"`
	Cron    string          `json:"cron"`
	TZ      string          `json:"tz,omitempty"`
	Handler string          `json:"handler"`
	Key     string          `json:"key"`
	Payload json.RawMessage `json:"payload"`
	CatchUp string          `json:"catch_up"`
	Paused  bool            `json:"paused,omitempty"`
	// CreatedMs is when it was added (unix ms). SinceMs is when it was
	// added or last resumed: no tick at or before it fires, so the ticks
	// of a paused schedule are not caught up when it resumes.
	CreatedMs int64 `json:"created_ms"`
	SinceMs   int64 `json:"since_ms"`
}

// SameSpec reports whether r and o fire the same jobs at the same times:
// adding the same schedule again changes nothing.
func (r ScheduleRecord) SameSpec(o ScheduleRecord) bool {
	return r.Name == o.Name && r.Cron == o.Cron && r.TZ == o.TZ && r.Handler == o.Handler && r.Key == o.Key &&
		bytes.Equal(r.Payload, o.Payload) && r.CatchUp == o.CatchUp
}

// LastTick is what a schedule's owner last did, in unix seconds: the
// latest tick it handled (fired or skipped), and the latest it fired.
type LastTick struct {
	Through int64
	Fired   int64
}

func (l LastTick) String() string {
	return strconv.FormatInt(l.Through, 10) + " " + strconv.FormatInt(l.Fired, 10)
}

func parseLastTick(s string) LastTick {
	a, b, _ := strings.Cut(s, " ")
	through, _ := strconv.ParseInt(a, 10, 64)
	fired, _ := strconv.ParseInt(b, 10, 64)
	return LastTick{Through: through, Fired: fired}
}

// StoredSchedule is a schedule as read from its partition.
type StoredSchedule struct {
	ScheduleRecord
	Partition int
	Last      LastTick
	// raw and rawLast are the stored strings, which the tick script
	// compares to tell that neither changed since they were read.
	raw, rawLast string
}

// scheduleSetScript replaces a schedule's definition if it is still the
// one the caller read, so a pause and a delete never undo each other.
//
// KEYS[1] definitions, KEYS[2] last ticks
// ARGV[1] name, ARGV[2] definition read ("" = none), ARGV[3] new one,
// ARGV[4] "1" to forget the last tick (a new schedule starts afresh)
// Returns 1 if replaced, 0 if the definition was not the one read.
var scheduleSetScript = redis.NewScript(`
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '1' then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
`)

// scheduleSetTries bounds the retries of a definition change that raced
// another change of the same schedule.
const scheduleSetTries = 10

// AddSchedule stores rec in partition p (the partition of its name). A
// schedule of that name with the same definition is left as it is (created
// is false); one with another definition is ErrScheduleExists.
func (s *Store) AddSchedule(ctx context.Context, p int, rec ScheduleRecord) (StoredSchedule, bool, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return StoredSchedule{}, false, fmt.Errorf("store: add schedule %q: %w", rec.Name, err)
	}
	k := keys.For(p)
	for range scheduleSetTries {
		ok, err := s.runScript(ctx, scheduleSetScript, []string{k.Schedules(), k.ScheduleTicks()}, rec.Name, "", raw, "1").Int()
		if err != nil {
			return StoredSchedule{}, false, fmt.Errorf("store: add schedule %q: %w", rec.Name, err)
		}
		if ok == 1 {
			s.schedulesChanged(ctx)
			return StoredSchedule{ScheduleRecord: rec, Partition: p, raw: string(raw)}, true, nil
		}
		cur, err := s.schedule(ctx, p, rec.Name)
		if errors.Is(err, ErrNoSchedule) {
			continue // deleted meanwhile
		}
		if err != nil {
			return StoredSchedule{}, false, err
		}
		if !cur.SameSpec(rec) {
			return cur, false, fmt.Errorf("schedule %q: %w", rec.Name, ErrScheduleExists)
		}
		return cur, false, nil
	}
	return StoredSchedule{}, false, fmt.Errorf("store: add schedule %q: changed by others %d times in a row", rec.Name, scheduleSetTries)
}

// SetSchedulePaused pauses or resumes schedule name of partition p at now.
// A resumed schedule fires the ticks after now only. Pausing a paused
// schedule, or resuming a running one, changes nothing.
func (s *Store) SetSchedulePaused(ctx context.Context, p int, name string, paused bool, now time.Time) (StoredSchedule, error) {
	k := keys.For(p)
	for range scheduleSetTries {
		cur, err := s.schedule(ctx, p, name)
		if err != nil {
			return StoredSchedule{}, err
		}
		if cur.Paused == paused {
			return cur, nil
		}
		rec := cur.ScheduleRecord
		rec.Paused = paused
		if !paused {
			rec.SinceMs = now.UnixMilli()
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return StoredSchedule{}, fmt.Errorf("store: schedule %q: %w", name, err)
		}
		ok, err := s.runScript(ctx, scheduleSetScript, []string{k.Schedules(), k.ScheduleTicks()}, name, cur.raw, raw, "0").Int()
		if err != nil {
			return StoredSchedule{}, fmt.Errorf("store: schedule %q: %w", name, err)
		}
		if ok == 1 {
			s.schedulesChanged(ctx)
			cur.ScheduleRecord, cur.raw = rec, string(raw)
			return cur, nil
		}
	}
	return StoredSchedule{}, fmt.Errorf("store: schedule %q: changed by others %d times in a row", name, scheduleSetTries)
}

// DeleteSchedule removes schedule name of partition p, and its last tick;
// false if there was none.
func (s *Store) DeleteSchedule(ctx context.Context, p int, name string) (bool, error) {
	k := keys.For(p)
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		del = pipe.HDel(ctx, k.Schedules(), name)
		pipe.HDel(ctx, k.ScheduleTicks(), name)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: delete schedule %q: %w", name, err)
	}
	if del.Val() == 0 {
		return false, nil
	}
	s.schedulesChanged(ctx)
	return true, nil
}

// schedulesChanged tells the owners that a schedule changed. If Redis
// does not take it, they find the change when they next read all their
// schedules anyway, a few seconds later.
func (s *Store) schedulesChanged(ctx context.Context) {
	s.rdb.Incr(ctx, keys.SchedulesChanged)
}

// SchedulesChanged is a number that changes whenever a schedule does.
func (s *Store) SchedulesChanged(ctx context.Context) (int64, error) {
	n, err := s.rdb.Get(ctx, keys.SchedulesChanged).Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("store: read schedule changes: %w", err)
	}
	return n, nil
}

// schedule reads one schedule.
func (s *Store) schedule(ctx context.Context, p int, name string) (StoredSchedule, error) {
	k := keys.For(p)
	pipe := s.rdb.Pipeline()
	def := pipe.HGet(ctx, k.Schedules(), name)
	last := pipe.HGet(ctx, k.ScheduleTicks(), name)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return StoredSchedule{}, fmt.Errorf("store: read schedule %q: %w", name, err)
	}
	if errors.Is(def.Err(), redis.Nil) {
		return StoredSchedule{}, fmt.Errorf("schedule %q: %w", name, ErrNoSchedule)
	}
	return decodeSchedule(p, def.Val(), last.Val())
}

func decodeSchedule(p int, raw, rawLast string) (StoredSchedule, error) {
	sc := StoredSchedule{Partition: p, raw: raw, rawLast: rawLast, Last: parseLastTick(rawLast)}
	if err := json.Unmarshal([]byte(raw), &sc.ScheduleRecord); err != nil {
		return StoredSchedule{}, fmt.Errorf("store: schedule in partition %d: %w", p, err)
	}
	return sc, nil
}

// Schedules reads the schedules of partitions, in one pipeline, sorted by
// name. A definition that cannot be decoded is an error.
func (s *Store) Schedules(ctx context.Context, partitions []int) ([]StoredSchedule, error) {
	pipe := s.rdb.Pipeline()
	defs := make([]*redis.MapStringStringCmd, len(partitions))
	lasts := make([]*redis.MapStringStringCmd, len(partitions))
	for i, p := range partitions {
		k := keys.For(p)
		defs[i] = pipe.HGetAll(ctx, k.Schedules())
		lasts[i] = pipe.HGetAll(ctx, k.ScheduleTicks())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read schedules: %w", err)
	}
	var out []StoredSchedule
	for i, p := range partitions {
		last := lasts[i].Val()
		for name, raw := range defs[i].Val() {
			sc, err := decodeSchedule(p, raw, last[name])
			if err != nil {
				return nil, fmt.Errorf("%w (schedule %q)", err, name)
			}
			out = append(out, sc)
		}
	}
	slices.SortFunc(out, func(a, b StoredSchedule) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// tickScript records a schedule's ticks under its partition's grant and,
// in the same step, puts their jobs in the partition's outbox, from where
// the relay enqueues them in their key's partition (marking the entry
// there, so it is enqueued once). Either both happen or neither: a tick
// recorded is a tick fired, and a stale owner, a schedule changed since it
// was read (paused, deleted, replaced) or a last tick moved since (a call
// whose reply was lost, then retried) fires nothing.
//
// KEYS[1] epoch, KEYS[2] definitions, KEYS[3] last ticks, KEYS[4] outbox
// ARGV[1] the owner's grant, ARGV[2] name, ARGV[3] definition read,
// ARGV[4] last tick read ("" = none), ARGV[5] new last tick, ARGV[6] the
// ticks' jobs packed as an outbox entry ("" = none: ticks skipped only)
// Returns 1, or an error "FENCED <current>", "CHANGED <name>" or
// "LASTTICK <last>" (not MOVED, which Redis Cluster clients take for a
// redirection).
var tickScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. tostring(cur))
end
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
  return redis.error_reply('CHANGED ' .. ARGV[2])
end
local last = redis.call('HGET', KEYS[3], ARGV[2]) or ''
if last ~= ARGV[4] then
  return redis.error_reply('LASTTICK ' .. (last == '' and 'none' or last))
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'b', ARGV[6])
end
return 1
`)

// FireTicks fires the jobs of schedule sc's ticks and records next as its
// last tick, under grant of its partition (see tickScript); with no jobs
// it records ticks skipped. It returns sc as it is now. The jobs' ids are
// first reserved in the cluster like a submitted job's: a tick's id that
// names another job (which only a schedule replaced within a second could
// do) is not fired, and comes back in refused. It returns an error
// wrapping lease.ErrFenced for a stale grant, ErrScheduleChanged or
// ErrTickMoved; then nothing was fired.
func (s *Store) FireTicks(ctx context.Context, grant lease.Grant, sc StoredSchedule, next LastTick, jobs []Job) (_ StoredSchedule, refused []string, err error) {
	p := sc.Partition
	if len(jobs) > 0 {
		errs, err := s.reserve(ctx, jobs, time.Now().UnixMilli())
		if err != nil {
			return sc, nil, fmt.Errorf("store: reserve the ids of schedule %q's ticks: %w", sc.Name, err)
		}
		kept := jobs[:0:0]
		for i, e := range errs {
			switch {
			case e == nil:
				kept = append(kept, jobs[i])
			case isConflict(e):
				refused = append(refused, jobs[i].ID)
			default:
				return sc, nil, e
			}
		}
		jobs = kept
	}
	var packed any = ""
	if len(jobs) > 0 {
		packed = packEmits(jobs)
	}
	k := keys.For(p)
	err = s.runScript(ctx, tickScript, []string{k.Epoch(), k.Schedules(), k.ScheduleTicks(), k.Outbox()},
		grant.String(), sc.Name, sc.raw, sc.rawLast, next.String(), packed).Err()
	switch {
	case err == nil:
		sc.Last, sc.rawLast = next, next.String()
		return sc, refused, nil
	case strings.HasPrefix(err.Error(), "CHANGED"):
		return sc, nil, fmt.Errorf("store: ticks of schedule %q: %w", sc.Name, ErrScheduleChanged)
	case strings.HasPrefix(err.Error(), "LASTTICK"):
		return sc, nil, fmt.Errorf("store: ticks of schedule %q: %w (%s)", sc.Name, ErrTickMoved, err.Error())
	}
	return sc, nil, fenceErr("ticks of schedule "+strconv.Quote(sc.Name), p, grant, err)
}
