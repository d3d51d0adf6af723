package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// memSchedules is a store of schedules in memory, with the tick script's
// checks: the grant, the definition and the last tick as read.
type memSchedules struct {
	mu      sync.Mutex
	grant   map[int]lease.Grant
	scheds  map[string]store.StoredSchedule
	changes int64
	fired   []string // tick job ids, in the order fired
}

func (m *memSchedules) Schedules(_ context.Context, parts []int) ([]store.StoredSchedule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.StoredSchedule
	for _, sc := range m.scheds {
		if slices.Contains(parts, sc.Partition) {
			out = append(out, sc)
		}
	}
	return out, nil
}

func (m *memSchedules) SchedulesChanged(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changes, nil
}

func (m *memSchedules) FireTicks(_ context.Context, grant lease.Grant, sc store.StoredSchedule, next store.LastTick, jobs []store.Job) (store.StoredSchedule, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.scheds[sc.Name]
	switch {
	case m.grant[sc.Partition] != grant:
		return sc, nil, fmt.Errorf("partition %d: %w", sc.Partition, lease.ErrFenced)
	case !ok || !cur.SameSpec(sc.ScheduleRecord) || cur.Paused != sc.Paused || cur.SinceMs != sc.SinceMs:
		return sc, nil, store.ErrScheduleChanged
	case cur.Last != sc.Last:
		return sc, nil, store.ErrTickMoved
	}
	cur.Last = next
	m.scheds[sc.Name] = cur
	for _, j := range jobs {
		m.fired = append(m.fired, j.ID)
	}
	return cur, nil, nil
}

func (m *memSchedules) put(sc store.StoredSchedule) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scheds[sc.Name] = sc
	m.changes++
}

func (m *memSchedules) firedIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.fired)
}

type kicks struct {
	mu sync.Mutex
	n  int
}

func (k *kicks) kick(int) { k.mu.Lock(); k.n++; k.mu.Unlock() }

// t0 is the moment the test schedules are added.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func at(secs float64) time.Time { return t0.Add(time.Duration(secs * float64(time.Second))) }

func tickIDs(name string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, schedule.TickID(name, at(float64(i))))
	}
	return out
}

// schedulerWith makes a scheduler that owns the partition of schedule
// name, over st, with metrics.
func schedulerWith(t *testing.T, st scheduleStore, grant lease.Grant, name string) (*scheduler, *grants, *metrics.Worker) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = "w-sched"
	g := newGrants()
	g.add(sharding.PartitionOf(name, cfg.Ring.Partitions), grant)
	s := newScheduler(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), st, g, trustedLease{}, &kicks{})
	m := metrics.NewWorker(cfg.ID, metrics.Source{})
	s.metrics = &workerMetrics{m: m}
	return s, g, m
}

func counted(t *testing.T, m *metrics.Worker, name, schedule string) int {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "schedule" && l.GetValue() == schedule {
					return int(s.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// A per-second schedule fires each tick on time; then no worker could fire
// it for 20 seconds, and each catch-up does its part with what was missed.
func TestSchedulerCatchUp(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		mode   string
		after  []string // fired at 20.5 s, after ticks 1 and 2 on time
		missed int
	}{
		{"none", tickIDs("every", 16, 20), 13},
		{"one", tickIDs("every", 15, 20), 12},
		{"all", tickIDs("every", 3, 20), 0},
	} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			grant := lease.Grant{Epoch: 1, Nonce: "a"}
			p := sharding.PartitionOf("every", DefaultConfig().Ring.Partitions)
			st := &memSchedules{grant: map[int]lease.Grant{p: grant}, scheds: map[string]store.StoredSchedule{}}
			st.put(store.StoredSchedule{Partition: p, ScheduleRecord: store.ScheduleRecord{Name: "every", Cron: "@every 1s",
				Handler: "donor.donate", Key: "alice", Payload: []byte(`{}`), CatchUp: c.mode, SinceMs: t0.UnixMilli()}})
			s, _, m := schedulerWith(t, st, grant, "every")
			ctx := context.Background()
			if wake := s.step(ctx, at(0.1)); !wake.Equal(at(0.35)) {
				t.Errorf("woke at %v, want at the next poll", wake.Sub(t0))
			}
			if wake := s.step(ctx, at(0.5)); !wake.Equal(at(0.75)) {
				t.Errorf("woke at %v", wake.Sub(t0))
			}
			if wake := s.step(ctx, at(0.9)); !wake.Equal(at(1)) {
				t.Errorf("woke at %v, want at the first tick", wake.Sub(t0))
			}
			s.step(ctx, at(1.01))
			s.step(ctx, at(2.002))
			if got := st.firedIDs(); !slices.Equal(got, tickIDs("every", 1, 2)) {
				t.Fatalf("on time: fired %v", got)
			}
			s.step(ctx, at(20.5)) // the outage ends
			got := st.firedIDs()[2:]
			if !slices.Equal(got, c.after) {
				t.Fatalf("after the outage: fired %v, want %v", got, c.after)
			}
			if n := counted(t, m, "corral_schedule_ticks_missed_total", "every"); n != c.missed {
				t.Errorf("missed %d, want %d", n, c.missed)
			}
			if n := counted(t, m, "corral_schedule_ticks_fired_total", "every"); n != 2+len(c.after) {
				t.Errorf("fired %d, want %d", n, 2+len(c.after))
			}
			// Each tick once, however often the scheduler looks.
			for _, now := range []float64{20.5, 20.6, 20.9} {
				s.step(ctx, at(now))
			}
			if n := len(st.firedIDs()); n != 2+len(c.after) {
				t.Errorf("fired %d ticks after looking again, want %d", n, 2+len(c.after))
			}
		})
	}
}

// A paused schedule fires nothing; resumed, it goes on from then, without
// the ticks of the pause.
func TestSchedulerPauseResume(t *testing.T) {
	t.Parallel()
	grant := lease.Grant{Epoch: 1, Nonce: "a"}
	p := sharding.PartitionOf("every", DefaultConfig().Ring.Partitions)
	st := &memSchedules{grant: map[int]lease.Grant{p: grant}, scheds: map[string]store.StoredSchedule{}}
	sc := store.StoredSchedule{Partition: p, ScheduleRecord: store.ScheduleRecord{Name: "every", Cron: "@every 1s",
		Handler: "donor.donate", Key: "alice", Payload: []byte(`{}`), CatchUp: "all", SinceMs: t0.UnixMilli()}}
	st.put(sc)
	s, _, _ := schedulerWith(t, st, grant, "every")
	ctx := context.Background()
	s.step(ctx, at(1.01))
	sc = st.scheds["every"]
	sc.Paused = true
	st.put(sc)
	for _, now := range []float64{2.01, 3.01, 4.01, 9.01} {
		s.step(ctx, at(now))
	}
	sc = st.scheds["every"]
	sc.Paused, sc.SinceMs = false, at(9.5).UnixMilli()
	st.put(sc)
	s.step(ctx, at(9.8))
	s.step(ctx, at(10.01))
	s.step(ctx, at(11.01))
	want := append(tickIDs("every", 1, 1), tickIDs("every", 10, 11)...)
	if got := st.firedIDs(); !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
}

// Two workers believe they own a schedule's partition: the one with the
// stale grant fires nothing and drops the partition; every tick is in the
// outbox once, from the other. Real Redis, real tick script.
func TestSchedulerStaleOwnerFiresNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testenv.StartRedis(t).Client(t)
	ctx := context.Background()
	cfg := DefaultConfig()
	st := store.New(rdb, cfg.Store)
	p := sharding.PartitionOf("every", cfg.Ring.Partitions)
	old, err := lease.Claim(ctx, rdb, p, "a~1", "")
	if err != nil {
		t.Fatal(err)
	}
	rec := store.ScheduleRecord{Name: "every", Cron: "@every 1s", Handler: "donor.donate", Key: "alice",
		Payload: []byte(`{"amount_cents":1}`), CatchUp: "all", SinceMs: t0.UnixMilli()}
	if _, _, err := st.AddSchedule(ctx, p, rec); err != nil {
		t.Fatal(err)
	}
	a, aGrants, _ := schedulerWith(t, st, old, "every")
	a.step(ctx, at(1.01)) // a fires tick 1, then loses the partition without knowing
	cur, err := lease.Claim(ctx, rdb, p, "b~1", "a~1")
	if err != nil {
		t.Fatal(err)
	}
	b, _, bm := schedulerWith(t, st, cur, "every")
	for i := 2; i <= 30; i++ {
		now := at(float64(i) + 0.01)
		a.step(ctx, now)
		b.step(ctx, now)
	}
	if _, ok := aGrants.grantOf(p); ok {
		t.Error("the stale owner kept the partition after its tick was fenced")
	}
	ids := outboxIDs(t, st, p, cfg.Ring.Partitions)
	if want := tickIDs("every", 1, 30); !slices.Equal(ids, want) {
		t.Fatalf("outbox holds %v,\nwant %v", ids, want)
	}
	if n := counted(t, bm, "corral_schedule_ticks_fired_total", "every"); n != 29 {
		t.Errorf("the owner counts %d ticks fired, want 29", n)
	}
}

// outboxIDs relays partition p's outbox and lists the ids of the jobs
// queued in their partitions, in order.
func outboxIDs(t *testing.T, st *store.Store, p, partitions int) []string {
	t.Helper()
	ctx := context.Background()
	partitionOf := func(key string) int { return sharding.PartitionOf(key, partitions) }
	for {
		r, err := st.RelayMany(ctx, []store.RelaySource{{Partition: p}}, 100, partitionOf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sources[p].Read == 0 {
			break
		}
	}
	target := partitionOf("alice")
	got, err := st.Read(ctx, map[int]string{target: store.StartID}, 1000, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range got[target] {
		if strings.HasPrefix(j.ID, "s~") {
			ids = append(ids, j.ID)
		}
	}
	return ids
}
