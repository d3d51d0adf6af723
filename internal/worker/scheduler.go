package worker

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/store"
)

// schedulePoll is how often the scheduler looks for partitions granted or
// lost and for schedules added, changed or deleted anywhere (one GET). A
// new schedule, or a resumed one, is fired within it; a pause or a delete
// needs no poll: the tick script refuses a schedule that changed.
const schedulePoll = 250 * time.Millisecond

// scheduleReread is how often every owned schedule is read again anyway,
// in case a change was stored but its count was not.
const scheduleReread = 30 * time.Second

// tickChunk bounds the ticks one tick script fires (a catch-up may fire a
// thousand).
const tickChunk = 100

// scheduleRetry is the wait after a tick script that failed.
const scheduleRetry = time.Second

// scheduleStore is what the scheduler needs of the store.
type scheduleStore interface {
	Schedules(ctx context.Context, partitions []int) ([]store.StoredSchedule, error)
	SchedulesChanged(ctx context.Context) (int64, error)
	FireTicks(ctx context.Context, grant lease.Grant, sc store.StoredSchedule, next store.LastTick, jobs []store.Job) (store.StoredSchedule, []string, error)
}

// scheduleGrants is what the scheduler needs of the grants table.
type scheduleGrants interface {
	snapshot() map[int]lease.Grant
	drop(p int, grant lease.Grant)
	runBatch(p int, grant lease.Grant, f func()) bool
}

// scheduler fires the schedules of the partitions this worker owns: per
// partition and grant it keeps the partition's schedules and wakes at the
// next tick of any of them. A tick is fired by the tick script, under the
// partition's grant, which records it and puts its job in the outbox in
// one step (the relay then enqueues it in its key's partition), so a
// failover, a restart or a stale owner never fires a tick twice. Ticks
// missed while no one could fire them go as each schedule's catch-up says
// (see schedule.PlanTicks).
type scheduler struct {
	cfg     Config
	log     *slog.Logger
	store   scheduleStore
	grants  scheduleGrants
	lease   interface{ Valid() bool } // fires only while the lease is trusted
	relay   interface{ kick(p int) }  // told of fresh outbox entries
	now     func() time.Time
	metrics *workerMetrics // nil: not counted

	loop schedulerLoop // read and written by the loop only
}

// schedulerLoop is what the scheduler's loop carries from one round to
// the next.
type schedulerLoop struct {
	parts   map[int]*ownedSchedules
	changes int64     // the store's change count when the schedules were last read
	polled  time.Time // last poll
	reread  time.Time // when every owned schedule was last read
	failing bool      // the last poll failed (logged once)
}

// ownedSchedules are one partition's schedules, for one grant.
type ownedSchedules struct {
	grant  lease.Grant
	byName map[string]*firing
	stale  bool // read again at the next poll: a tick was refused as changed
}

// firing is one schedule as its owner keeps it.
type firing struct {
	sc      store.StoredSchedule
	spec    schedule.Spec
	mode    schedule.CatchUp
	next    time.Time // the next tick to fire; zero: none (paused, or unreadable here)
	retryAt time.Time // after a failed tick script
}

func newScheduler(cfg Config, log *slog.Logger, st scheduleStore, g scheduleGrants, lh interface{ Valid() bool }, relay interface{ kick(p int) }) *scheduler {
	return &scheduler{cfg: cfg, log: log, store: st, grants: g, lease: lh, relay: relay, now: time.Now,
		loop: schedulerLoop{parts: map[int]*ownedSchedules{}, changes: -1}}
}

// run fires ticks until ctx ends, sleeping until the next tick or poll.
func (s *scheduler) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wake := s.step(ctx, s.now())
		t.Reset(max(wake.Sub(s.now()), time.Millisecond))
	}
}

// step polls if a poll is due, fires every tick due at now, and says when
// to come back.
func (s *scheduler) step(ctx context.Context, now time.Time) time.Time {
	if now.Sub(s.loop.polled) >= schedulePoll {
		s.poll(ctx, now)
	}
	wake := s.loop.polled.Add(schedulePoll)
	if !s.lease.Valid() {
		return wake // nothing fires until it is trusted again
	}
	for _, p := range slices.Sorted(maps.Keys(s.loop.parts)) {
		ps := s.loop.parts[p]
		for _, name := range slices.Sorted(maps.Keys(ps.byName)) {
			f := ps.byName[name]
			if f.next.IsZero() || f.next.After(now) || now.Before(f.retryAt) {
				continue
			}
			if !s.fire(ctx, p, ps, f, now) {
				break
			}
		}
	}
	for _, ps := range s.loop.parts {
		for _, f := range ps.byName {
			w := f.next
			if f.retryAt.After(w) {
				w = f.retryAt
			}
			if !f.next.IsZero() && w.Before(wake) {
				wake = w
			}
		}
	}
	return wake
}

// poll forgets the partitions no longer owned under the grant their
// schedules were read for, and reads the schedules of those granted since,
// of those whose tick was refused as changed, and, when any schedule
// changed in the cluster or every scheduleReread, of all.
func (s *scheduler) poll(ctx context.Context, now time.Time) {
	l := &s.loop
	l.polled = now
	owned := s.grants.snapshot()
	for p, ps := range l.parts {
		if g, ok := owned[p]; !ok || g != ps.grant {
			delete(l.parts, p)
		}
	}
	if len(owned) == 0 {
		return
	}
	changes, err := s.store.SchedulesChanged(ctx)
	if err != nil {
		s.pollFailed(ctx, err)
		return
	}
	all := changes != l.changes || now.Sub(l.reread) >= scheduleReread
	var read []int
	for p := range owned {
		if ps := l.parts[p]; all || ps == nil || ps.stale {
			read = append(read, p)
		}
	}
	if len(read) == 0 {
		return
	}
	slices.Sort(read)
	scs, err := s.store.Schedules(ctx, read)
	if err != nil {
		s.pollFailed(ctx, err)
		return
	}
	if l.failing {
		s.log.Info("reading schedules works again")
		l.failing = false
	}
	if all {
		l.changes, l.reread = changes, now
	}
	for _, p := range read {
		l.parts[p] = &ownedSchedules{grant: owned[p], byName: map[string]*firing{}}
	}
	for _, sc := range scs {
		ps := l.parts[sc.Partition]
		if ps == nil {
			continue
		}
		ps.byName[sc.Name] = s.firingOf(sc)
	}
}

func (s *scheduler) pollFailed(ctx context.Context, err error) {
	if ctx.Err() != nil || s.loop.failing {
		return
	}
	s.loop.failing = true
	s.log.Warn("reading schedules failed; the owned schedules fire as last read and are read again on the next poll", "err", err)
}

// firingOf is a schedule read from the store, ready to fire.
func (s *scheduler) firingOf(sc store.StoredSchedule) *firing {
	f := &firing{sc: sc}
	spec, err := schedule.Parse(sc.Cron, sc.TZ)
	if err == nil {
		f.mode, err = schedule.ParseCatchUp(sc.CatchUp)
	}
	if err != nil {
		// Validated when added; a worker of another version may read it
		// otherwise. It does not fire here rather than fire wrong.
		s.log.Error("schedule cannot be read by this worker; it does not fire here", "schedule", sc.Name, "partition", sc.Partition, "err", err)
		return f
	}
	f.spec = spec
	if !sc.Paused {
		f.next = spec.Next(ticksAfter(sc))
	}
	return f
}

// fire fires what is due of f's ticks at now, as its catch-up says, in
// tick scripts of up to tickChunk ticks. It returns false when the
// partition was dropped (fenced), so the caller stops on it.
func (s *scheduler) fire(ctx context.Context, p int, ps *ownedSchedules, f *firing, now time.Time) bool {
	plan := schedule.PlanTicks(f.spec, ticksAfter(f.sc), now, f.mode)
	if len(plan.Fire) == 0 && plan.Missed == 0 {
		f.next = plan.Next
		return true
	}
	log := s.log.With("schedule", f.sc.Name, "partition", p, "grant", ps.grant.String())
	counted := false
	for i := 0; i == 0 || i < len(plan.Fire); {
		chunk := plan.Fire[i:min(i+tickChunk, len(plan.Fire))]
		next := store.LastTick{Through: plan.Through.Unix(), Fired: f.sc.Last.Fired}
		if len(chunk) > 0 {
			last := chunk[len(chunk)-1].Unix()
			next.Fired = last
			if i+len(chunk) < len(plan.Fire) {
				next.Through = last
			}
		}
		jobs := s.tickJobs(f.sc, chunk, now)
		var sc store.StoredSchedule
		var refused []string
		var err error
		if !s.grants.runBatch(p, ps.grant, func() { sc, refused, err = s.store.FireTicks(ctx, ps.grant, f.sc, next, jobs) }) {
			return true // given up meanwhile: the next poll forgets it
		}
		if err != nil {
			return s.fireFailed(log, p, ps, f, err, now)
		}
		f.sc = sc
		if !counted {
			counted = true
			s.missed(log, f, plan)
		}
		s.metrics.ticksFired(f.sc.Name, len(jobs)-len(refused))
		if len(refused) > 0 {
			s.metrics.ticksMissed(f.sc.Name, len(refused))
			log.Warn("ticks not fired: their job ids name other jobs (the schedule was replaced within their second)", "jobs", refused)
		}
		if len(jobs) > 0 {
			s.relay.kick(p)
		}
		i += max(len(chunk), 1)
	}
	f.next = plan.Next
	if !plan.Done {
		f.next = now // more ticks to plan: at once
	}
	return true
}

// missed logs and counts the ticks a plan skips, and says how the
// schedule's catch-up handled the missed ones.
func (s *scheduler) missed(log *slog.Logger, f *firing, plan schedule.Plan) {
	if plan.Missed == 0 {
		return
	}
	s.metrics.ticksMissed(f.sc.Name, plan.Missed)
	switch {
	case !plan.Done:
		log.Warn("schedule missed more ticks than are looked at in one go; skipping them in rounds", "missed", plan.Missed, "catch_up", f.mode.String())
	case f.mode == schedule.CatchUpAll:
		log.Warn("schedule missed more ticks than catch-up all fires; fired the latest of them", "skipped", plan.Missed, "fired", len(plan.Fire), "limit", schedule.MaxCatchUp)
	default:
		log.Warn("schedule missed ticks while no worker could fire them", "skipped", plan.Missed, "catch_up", f.mode.String(), "fired", len(plan.Fire))
	}
}

// fireFailed handles a tick script that fired nothing: a stale grant drops
// the partition (as a fenced commit does), a schedule changed since read
// is read again, anything else is tried again after scheduleRetry.
func (s *scheduler) fireFailed(log *slog.Logger, p int, ps *ownedSchedules, f *firing, err error, now time.Time) bool {
	switch {
	case isFenced(err):
		log.Warn("tick refused: this worker's grant of the partition is stale; dropping the partition", "err", err)
		s.grants.drop(p, ps.grant)
		delete(s.loop.parts, p)
		return false
	case errors.Is(err, store.ErrScheduleChanged), errors.Is(err, store.ErrTickMoved):
		log.Info("tick refused: the schedule changed since it was read; reading it again", "err", err)
		ps.stale = true
		f.next = time.Time{}
	default:
		log.Warn("firing ticks failed; trying again", "retry_in", scheduleRetry, "err", err)
		f.retryAt = now.Add(scheduleRetry)
	}
	return true
}

// tickJobs are the jobs of schedule sc's ticks.
func (s *scheduler) tickJobs(sc store.StoredSchedule, ticks []time.Time, now time.Time) []store.Job {
	if len(ticks) == 0 {
		return nil
	}
	p := s.cfg.routing().PartitionOf(sc.Key)
	jobs := make([]store.Job, len(ticks))
	for i, t := range ticks {
		jobs[i] = store.Job{ID: schedule.TickID(sc.Name, t), Handler: sc.Handler, Key: sc.Key, Payload: sc.Payload,
			Attempt: 1, SubmittedAt: now.UnixMilli(), Partition: p}
	}
	return jobs
}

// ticksFired counts n ticks of schedule name fired.
func (m *workerMetrics) ticksFired(name string, n int) {
	if m != nil && n > 0 {
		m.m.TicksFired(name, n)
	}
}

// ticksMissed counts n ticks of schedule name skipped.
func (m *workerMetrics) ticksMissed(name string, n int) {
	if m != nil && n > 0 {
		m.m.TicksMissed(name, n)
	}
}
