package store_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

func nightly() store.ScheduleRecord {
	return store.ScheduleRecord{Name: "nightly", Cron: "@every 1s", Handler: "donor.donate", Key: "alice",
		Payload: []byte(`{"amount_cents":1}`), CatchUp: "one", CreatedMs: 1000, SinceMs: 1000}
}

func TestScheduleDefinitions(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	p := sharding.PartitionOf("nightly", 8)
	changes := func() int64 {
		n, err := s.SchedulesChanged(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	c0 := changes()
	sc, created, err := s.AddSchedule(ctx, p, nightly())
	if err != nil || !created || sc.Partition != p {
		t.Fatalf("add: %+v %v %v", sc, created, err)
	}
	again := nightly()
	again.CreatedMs, again.SinceMs = 2000, 2000 // the same schedule added again later
	if sc, created, err := s.AddSchedule(ctx, p, again); err != nil || created || sc.CreatedMs != 1000 {
		t.Fatalf("the same schedule again: %+v %v %v", sc, created, err)
	}
	other := nightly()
	other.Key = "bob"
	if _, _, err := s.AddSchedule(ctx, p, other); !errors.Is(err, store.ErrScheduleExists) {
		t.Fatalf("another schedule of the same name: %v", err)
	}
	if changes() == c0 {
		t.Error("adding a schedule left the change count as it was")
	}
	now := time.UnixMilli(5000)
	paused, err := s.SetSchedulePaused(ctx, p, "nightly", true, now)
	if err != nil || !paused.Paused || paused.SinceMs != 1000 {
		t.Fatalf("pause: %+v %v", paused, err)
	}
	c1 := changes()
	if _, err := s.SetSchedulePaused(ctx, p, "nightly", true, now); err != nil || changes() != c1 {
		t.Fatalf("pausing a paused schedule: %v, changes %d then %d", err, c1, changes())
	}
	resumed, err := s.SetSchedulePaused(ctx, p, "nightly", false, now)
	if err != nil || resumed.Paused || resumed.SinceMs != 5000 {
		t.Fatalf("resume: %+v %v", resumed, err)
	}
	all, err := s.Schedules(ctx, []int{0, 1, 2, 3, 4, 5, 6, 7})
	if err != nil || len(all) != 1 || all[0].Name != "nightly" || all[0].SinceMs != 5000 || all[0].Partition != p {
		t.Fatalf("list: %+v %v", all, err)
	}
	if ok, err := s.DeleteSchedule(ctx, p, "nightly"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, err := s.DeleteSchedule(ctx, p, "nightly"); ok || err != nil {
		t.Fatalf("delete again: %v %v", ok, err)
	}
	if _, err := s.SetSchedulePaused(ctx, p, "nightly", true, now); !errors.Is(err, store.ErrNoSchedule) {
		t.Fatalf("pause a deleted schedule: %v", err)
	}
}

// tickJob is the job of schedule nightly's tick at unix second sec.
func tickJob(sec int64, payload string) store.Job {
	id := "s~nightly~" + strconv.FormatInt(sec, 10)
	return store.Job{ID: id, Handler: "donor.donate", Key: "alice", Payload: []byte(payload), Attempt: 1,
		Partition: sharding.PartitionOf("alice", 8)}
}

// readOne reads schedule nightly of partition p.
func readOne(t *testing.T, s *store.Store, p int) store.StoredSchedule {
	t.Helper()
	all, err := s.Schedules(context.Background(), []int{p})
	if err != nil || len(all) != 1 {
		t.Fatalf("read schedules of partition %d: %+v %v", p, all, err)
	}
	return all[0]
}

// TestTickScriptIsFenced: the tick script records a tick and puts its job
// in the outbox only under the partition's current grant, only if the
// schedule and its last tick are as the owner read them.
func TestTickScriptIsFenced(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	p := sharding.PartitionOf("nightly", 8)
	k := keys.For(p)
	g1, err := lease.Claim(ctx, rdb, p, "a~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddSchedule(ctx, p, nightly()); err != nil {
		t.Fatal(err)
	}
	read := readOne(t, s, p)
	const pay = `{"amount_cents":1}`
	if _, refused, err := s.FireTicks(ctx, g1, read, store.LastTick{Through: 11, Fired: 11}, []store.Job{tickJob(10, pay), tickJob(11, pay)}); err != nil || refused != nil {
		t.Fatalf("fire under the current grant: %v %v", refused, err)
	}
	outbox := func() int64 { return rdb.XLen(ctx, k.Outbox()).Val() }
	if n := outbox(); n != 1 {
		t.Fatalf("outbox holds %d entries, want 1 (two ticks, one entry)", n)
	}
	// The same call again, as after a lost reply: the last tick moved.
	if _, _, err := s.FireTicks(ctx, g1, read, store.LastTick{Through: 11, Fired: 11}, []store.Job{tickJob(10, pay), tickJob(11, pay)}); !errors.Is(err, store.ErrTickMoved) {
		t.Fatalf("the same ticks again: %v", err)
	}

	// Another worker is granted the partition; the first one's next tick
	// is refused, whatever it read.
	g2, err := lease.Claim(ctx, rdb, p, "b~1", "a~1")
	if err != nil {
		t.Fatal(err)
	}
	fresh := readOne(t, s, p)
	if fresh.Last != (store.LastTick{Through: 11, Fired: 11}) {
		t.Fatalf("last tick %+v", fresh.Last)
	}
	for _, sc := range []store.StoredSchedule{read, fresh} {
		_, _, err := s.FireTicks(ctx, g1, sc, store.LastTick{Through: 12, Fired: 12}, []store.Job{tickJob(12, pay)})
		if !errors.Is(err, lease.ErrFenced) {
			t.Fatalf("a stale grant fired a tick: %v", err)
		}
	}
	if got := readOne(t, s, p).Last; got.Through != 11 || outbox() != 1 {
		t.Fatalf("a stale grant moved the last tick to %+v or added to the outbox (%d entries)", got, outbox())
	}

	// Paused since it was read: the tick is refused.
	if _, err := s.SetSchedulePaused(ctx, p, "nightly", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.FireTicks(ctx, g2, fresh, store.LastTick{Through: 12, Fired: 12}, []store.Job{tickJob(12, pay)}); !errors.Is(err, store.ErrScheduleChanged) {
		t.Fatalf("a tick of a paused schedule: %v", err)
	}
	if _, err := s.SetSchedulePaused(ctx, p, "nightly", false, time.Now()); err != nil {
		t.Fatal(err)
	}

	// Skipping only: the last tick moves, nothing is fired.
	fresh = readOne(t, s, p)
	if _, _, err := s.FireTicks(ctx, g2, fresh, store.LastTick{Through: 20, Fired: 11}, nil); err != nil {
		t.Fatal(err)
	}
	if got := readOne(t, s, p).Last; got != (store.LastTick{Through: 20, Fired: 11}) || outbox() != 1 {
		t.Fatalf("after a skip: last %+v, outbox %d", got, outbox())
	}

	// A tick whose id names another job is not fired; the others are.
	if res, err := s.Enqueue(ctx, []store.Job{tickJob(21, `{"amount_cents":2}`)}); err != nil || res[0].Err != nil {
		t.Fatalf("enqueue %v %v", res, err)
	}
	fresh = readOne(t, s, p)
	_, refused, err := s.FireTicks(ctx, g2, fresh, store.LastTick{Through: 22, Fired: 22}, []store.Job{tickJob(21, pay), tickJob(22, pay)})
	if err != nil || len(refused) != 1 || refused[0] != "s~nightly~21" {
		t.Fatalf("refused %v, %v", refused, err)
	}

	// The relay takes the ticks to their key's partition once.
	target := sharding.PartitionOf("alice", 8)
	partitionOf := func(key string) int { return sharding.PartitionOf(key, 8) }
	for range 2 {
		if _, err := s.RelayMany(ctx, []store.RelaySource{{Partition: p}}, 10, partitionOf, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Read(ctx, map[int]string{target: store.StartID}, 100, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range got[target] {
		ids = append(ids, j.ID)
	}
	want := []string{"s~nightly~21", "s~nightly~10", "s~nightly~11", "s~nightly~22"}
	if len(ids) != len(want) {
		t.Fatalf("queue of partition %d: %v, want %v", target, ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("queue of partition %d: %v, want %v", target, ids, want)
		}
	}
}
