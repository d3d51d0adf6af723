package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/routing"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// splitKey finds a key of old partition old (of P) that lands in q of N.
func splitKey(prefix string, old, P, q, N int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if sharding.PartitionOf(k, P) == old && sharding.PartitionOf(k, N) == q {
			return k
		}
	}
}

// layoutStore is a store of a 4-partition cluster on rdb that routes by a
// live layout, as a worker's does, and that layout.
func layoutStore(t testing.TB, rdb redis.UniversalClient) (*store.Store, *routing.Table) {
	t.Helper()
	routes := routing.New(4)
	cfg := store.DefaultConfig()
	cfg.Partitions, cfg.Routing = 4, routes
	s := store.New(rdb, cfg)
	if err := s.EnsurePartitions(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, routes
}

// reshardAndFreeze starts a reshard of layoutStore's 4 partitions to 8,
// has routes follow the layout, and freezes p for its split under grant.
func reshardAndFreeze(t *testing.T, s *store.Store, routes *routing.Table, p int, grant lease.Grant) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.StartReshard(ctx, 8); err != nil {
		t.Fatal(err)
	}
	v, _ := s.Layout(ctx)
	routes.Store(v)
	if _, err := s.FreezeForSplit(ctx, p, grant, 8); err != nil {
		t.Fatal(err)
	}
}

// splitAndNote splits the frozen p under grant, records the split and has
// routes follow the layout.
func splitAndNote(t *testing.T, s *store.Store, routes *routing.Table, p int, grant lease.Grant) store.SplitStats {
	t.Helper()
	ctx := context.Background()
	st, err := s.SplitPartition(ctx, p, grant, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NoteSplitDone(ctx, p, 8); err != nil {
		t.Fatal(err)
	}
	v, _ := s.Layout(ctx)
	routes.Store(v)
	return st
}

// TestSplitPartition splits partition 1 of 4 into 1 and 5 of 8 with a
// key in every state: its states (one with a TTL), a delayed job, a parked
// job with a job waiting behind it, a finished job. Afterwards the moving
// key's things are in partition 5 and nowhere in 1, the staying key's are
// untouched; enqueues were refused while frozen and, by a worker routing
// by the old count, after; the finished job sent again is a duplicate; a
// splitter with an older grant writes nothing.
func TestSplitPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	splitPartition(t, testenv.StartRedis(t).Client(t))
}

// TestSplitPartitionOnRedisCluster: the same where parent and child are
// slots of their own, on different nodes: every script touches one.
func TestSplitPartitionOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	splitPartition(t, testenv.StartRedisCluster(t).Client(t))
}

func splitPartition(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	s, routes := layoutStore(t, rdb)
	const p, c = 1, 5
	stay, move := splitKey("stay", p, 4, p, 8), splitKey("move", p, 4, c, 8)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	// States, a finished job of each key, then a parked job of move with
	// one waiting behind it, and a delayed job of each.
	if _, err := s.Enqueue(ctx, []store.Job{job("fin-move", move, p), job("fin-stay", stay, p), job("park", move, p), job("wait", move, p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	js := read[p]
	far := time.Now().Add(time.Hour).UnixMilli()
	parked := js[2]
	parked.Attempt, parked.NotBefore = 2, far
	b := &store.Batch{Done: []string{"fin-move", "fin-stay"}, Acked: []string{js[0].StreamID, js[1].StreamID, js[2].StreamID, js[3].StreamID},
		States: []store.StateWrite{
			{Entity: store.EntityRef{Type: "donor", Key: move}, Value: []byte("100")},
			{Entity: store.EntityRef{Type: "donor", Key: stay}, Value: []byte("7")},
			{Entity: store.EntityRef{Type: "session", Key: move}, Value: []byte("s"), TTL: time.Hour},
		},
		Keys: []store.KeyPlan{{Key: move, Park: &parked, Front: []store.Job{js[3]}}}}
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatal(err)
	}
	later := func(id, key string) store.Job {
		j := job(id, key, p)
		j.NotBefore = far
		return j
	}
	if _, err := s.Enqueue(ctx, []store.Job{later("later-move", move), later("later-stay", stay)}); err != nil {
		t.Fatal(err)
	}
	schedMove, schedStay := splitKey("sched-move", p, 4, c, 8), splitKey("sched-stay", p, 4, p, 8)
	for _, name := range []string{schedMove, schedStay} {
		if _, _, err := s.AddSchedule(ctx, p, store.ScheduleRecord{Name: name, Cron: "* * * * *", Handler: "donor.donate", Key: stay,
			Payload: []byte(`{}`), CatchUp: "last", CreatedMs: 1, SinceMs: 1}); err != nil {
			t.Fatal(err)
		}
	}

	if n, err := s.StartReshard(ctx, 6); err == nil {
		t.Fatalf("a reshard to 6 partitions (not a multiple of 4) was accepted (from %d)", n)
	}
	// A state from before entity types and indexes were recorded (a
	// cluster that ran an older release): only the scan finds it.
	kp0 := keys.For(p)
	rdb.Set(ctx, kp0.State("legacy:type", move), "old", 0)
	types, indexed, err := s.PrepareReshard(ctx, []string{"legacy:type"})
	if err != nil || indexed != 1 || types < 3 {
		t.Fatalf("prepare: %d types, %d keys indexed, %v; want the legacy state's key indexed", types, indexed, err)
	}
	if _, err := s.StartReshard(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartReshard(ctx, 12); !errors.Is(err, store.ErrReshardBusy) {
		t.Fatalf("a second reshard to another count: %v, want ErrReshardBusy", err)
	}
	v, err := s.Layout(ctx)
	if err != nil || !v.Resharding() || v.N != 8 {
		t.Fatalf("layout %+v %v, want a reshard to 8", v, err)
	}
	routes.Store(v)

	// Jobs still queued when the split comes: they move in order.
	if _, err := s.Enqueue(ctx, []store.Job{job("q1-move", move, p), job("q1-stay", stay, p), job("q2-move", move, p)}); err != nil {
		t.Fatal(err)
	}
	if done, err := s.FreezeForSplit(ctx, p, grant, 8); err != nil || done {
		t.Fatalf("freeze: done %v, %v", done, err)
	}
	res, err := s.Enqueue(ctx, []store.Job{job("during", stay, p)})
	var mv *store.MovingError
	if err != nil || !errors.As(res[0].Err, &mv) || !mv.Frozen {
		t.Fatalf("enqueue while frozen: %+v %v, want a MovingError (frozen)", res, err)
	}

	// A newer grant of p (the splitter was taken over) fences the old one.
	newer, err := lease.Claim(ctx, rdb, p, "w~2", "w~1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SplitPartition(ctx, p, grant, 8); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("split under the old grant: %v, want fenced", err)
	}
	// What an interrupted split left in the child: a parked job (and its
	// state) that p has run since. The split redone must not keep it.
	kc0 := keys.For(c)
	rdb.ZAdd(ctx, kc0.Parked(), redis.Z{Score: 1, Member: "stale"})
	rdb.HSet(ctx, kc0.Bodies(), "stale", `{"id":"stale","key":"gone"}`)
	rdb.HSet(ctx, kc0.Job("stale"), "h", "x")
	rdb.Set(ctx, kc0.State("donor", "gone"), "1", 0)
	rdb.ZAdd(ctx, kc0.Entities("donor"), redis.Z{Member: "gone"})
	st, err := s.SplitPartition(ctx, p, newer, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("split: %+v", st)
	if got := rdb.Get(ctx, keys.For(c).State("legacy:type", move)).Val(); got != "old" {
		t.Errorf("the legacy state in the child = %q, want old", got)
	}
	readIDs := func(part int) []string {
		got, err := s.Read(ctx, map[int]string{part: store.StartID}, 100, -1)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range got[part] {
			ids = append(ids, j.ID)
		}
		return ids
	}
	if got := fmt.Sprint(readIDs(c)); got != "[q1-move q2-move]" {
		t.Errorf("child's queue %s, want [q1-move q2-move]", got)
	}
	if got := fmt.Sprint(readIDs(p)); got != "[q1-stay]" {
		t.Errorf("parent's queue %s, want [q1-stay]", got)
	}
	if rdb.Exists(ctx, keys.For(c).Job("q1-move")).Val() != 1 || rdb.Exists(ctx, keys.For(p).Job("q1-move")).Val() != 0 {
		t.Errorf("the record of a queued job that moved is not (only) in the child")
	}
	if st.Queued != 2 || st.States != 3 || st.Delayed != 1 || st.Parked != 1 || st.Waiting != 1 || st.Schedules != 1 {
		t.Errorf("moved %+v, want 2 queued, 3 states, 1 delayed, 1 parked with 1 waiting, 1 schedule", st)
	}
	for part, want := range map[int]string{p: schedStay, c: schedMove} {
		scs, err := s.Schedules(ctx, []int{part})
		if err != nil || len(scs) != 1 || scs[0].Name != want {
			t.Errorf("schedules of partition %d: %+v %v, want only %s", part, scs, err, want)
		}
	}
	// The old splitter, late, cannot write to the child any more.
	if _, err := s.SplitPartition(ctx, p, grant, 8); err == nil {
		t.Fatal("the old grant's split went through after the new one's")
	}
	kp, kc := keys.For(p), keys.For(c)
	if got := rdb.Get(ctx, kc.State("donor", move)).Val(); got != "100" {
		t.Errorf("moved state in %d = %q, want 100", c, got)
	}
	if ttl := rdb.PTTL(ctx, kc.State("session", move)).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("moved state with a TTL has TTL %v in %d", ttl, c)
	}
	if n := rdb.Exists(ctx, kp.State("donor", move), kp.State("session", move)).Val(); n != 0 {
		t.Errorf("%d moved states left in %d", n, p)
	}
	if got := rdb.Get(ctx, kp.State("donor", stay)).Val(); got != "7" {
		t.Errorf("staying state = %q, want 7", got)
	}
	if got := rdb.ZRange(ctx, kc.Entities("donor"), 0, -1).Val(); len(got) != 1 || got[0] != move {
		t.Errorf("child's donor index %v, want [%s]", got, move)
	}
	if got := rdb.ZRange(ctx, kp.Entities("donor"), 0, -1).Val(); len(got) != 1 || got[0] != stay {
		t.Errorf("parent's donor index %v, want [%s]", got, stay)
	}
	if got := rdb.ZRange(ctx, kc.Delayed(), 0, -1).Val(); len(got) != 1 || got[0] != "later-move" {
		t.Errorf("child's delayed %v, want [later-move]", got)
	}
	if got := rdb.ZRange(ctx, kp.Delayed(), 0, -1).Val(); len(got) != 1 || got[0] != "later-stay" {
		t.Errorf("parent's delayed %v, want [later-stay]", got)
	}
	runs, err := s.LoadParked(ctx, c, far, 10, 10)
	if err != nil || len(runs) != 1 || len(runs[0].Jobs) != 2 || runs[0].Jobs[0].ID != "park" || runs[0].Jobs[1].ID != "wait" {
		t.Fatalf("child's parked runs %+v %v, want park then wait", runs, err)
	}
	if runs, _ := s.LoadParked(ctx, p, far, 10, 10); len(runs) != 0 {
		t.Errorf("parent still has parked runs %+v", runs)
	}
	if rdb.Exists(ctx, kc.Job("park"), kc.Job("later-move")).Val() != 2 || rdb.Exists(ctx, kp.Job("park"), kp.Job("later-move")).Val() != 0 {
		t.Errorf("the records of moved jobs are not (only) in the child")
	}
	if rdb.Exists(ctx, kc.Job("stale"), kc.State("donor", "gone")).Val() != 0 || rdb.ZScore(ctx, kc.Parked(), "stale").Err() == nil {
		t.Errorf("what an interrupted split left in the child is still there")
	}

	if ended, err := s.NoteSplitDone(ctx, p, 8); err != nil || ended {
		t.Fatalf("note split: ended %v, %v (3 partitions are not split)", ended, err)
	}
	v, _ = s.Layout(ctx)
	routes.Store(v)
	if !v.Done[p] || v.PartitionOf(move) != c || v.PartitionOf(stay) != p {
		t.Fatalf("layout after the split %+v: move → %d, stay → %d", v, v.PartitionOf(move), v.PartitionOf(stay))
	}
	// The other three splits end the reshard; a second one must wait for
	// the dedup window, while jobs are looked up in their old partitions.
	for _, q := range []int{0, 2, 3} {
		if _, err := s.NoteSplitDone(ctx, q, 8); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ = s.Layout(ctx); v.P != 8 || v.Resharding() || v.Prev != 4 {
		t.Fatalf("layout after every split %+v, want 8 partitions, 4 before", v)
	}
	routes.Store(v)
	if _, err := s.StartReshard(ctx, 16); !errors.Is(err, store.ErrReshardTooSoon) {
		t.Fatalf("a second reshard within the dedup window: %v, want ErrReshardTooSoon", err)
	} else {
		t.Logf("second reshard refused: %v", err)
	}
	// A worker that still routes by 4 is sent away from p.
	stale := store.New(rdb, store.Config{Partitions: 4, DoneRetention: time.Hour, ResultRetention: time.Hour})
	res, err = stale.Enqueue(ctx, []store.Job{job("stale", stay, p)})
	if err != nil || !errors.As(res[0].Err, &mv) || mv.Frozen {
		t.Fatalf("enqueue routed by the old count: %+v %v, want a MovingError (split)", res, err)
	}
	// Routed anew it goes in, and the job finished in p before is a
	// duplicate, not a new job of the child.
	res, err = s.Enqueue(ctx, []store.Job{job("stale", stay, p), job("fin-move", move, c), job("new-move", move, c)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Duplicate || !res[1].Duplicate || res[1].End != store.EndedDone || res[2].Duplicate || res[2].Err != nil {
		t.Fatalf("enqueue after the split: %+v", res)
	}
	if n := rdb.XLen(ctx, kc.Queue()).Val(); n != 3 {
		t.Errorf("child's queue holds %d jobs, want 3 (q1-move, q2-move, new-move)", n)
	}
}

// TestRelayAcrossSplit: an outbox entry with jobs for partition p and for
// another target A is relayed to p (marked there) while A is held back;
// then p is split and the entry relayed again, its p jobs now routed to
// p's child. The mark the entry left in p stops them going in twice; an
// entry first relayed after the split reaches the child once.
func TestRelayAcrossSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	s, routes := layoutStore(t, rdb)
	const src, a, p, c = 0, 2, 1, 5
	moving := splitKey("moving", p, 4, c, 8)
	toA := splitKey("a", a, 4, a, 8)
	es, _ := lease.Claim(ctx, rdb, src, "w~1", "")
	emitJobs := func(id string, ks ...string) {
		var emits []store.Job
		for i, k := range ks {
			emits = append(emits, store.Job{ID: fmt.Sprintf("%s/%d", id, i), Handler: "campaign.credit", Key: k, Payload: []byte(`{}`)})
		}
		if err := s.CommitBatch(ctx, src, es, &store.Batch{Emits: emits}); err != nil {
			t.Fatal(err)
		}
	}
	emitJobs("e1", moving, toA)
	route := func(k string) int { return routes.Load().PartitionOf(k) }
	holdA := func(t int) bool { return t == a }
	r, err := s.RelayMany(ctx, []store.RelaySource{{Partition: src}}, 10, route, holdA)
	if err != nil || r.Reached[p] != 1 || r.Sources[src].Kept != 1 {
		t.Fatalf("first relay: %+v %v, want 1 job into %d and the entry kept for %d", r, err, p, a)
	}
	// p's job ran there, then p was split: its queue is empty again.
	rdb.Del(ctx, keys.For(p).Queue())
	gp, _ := lease.Claim(ctx, rdb, p, "w~1", "")
	reshardAndFreeze(t, s, routes, p, gp)
	// While p is frozen a relay to it is refused and kept.
	emitJobs("e2", moving)
	r, err = s.RelayMany(ctx, []store.RelaySource{{Partition: src}}, 10, route, holdA)
	if err != nil || r.Failed[p] == nil || !errors.Is(r.Failed[p], store.ErrMoving) {
		t.Fatalf("relay to a frozen partition: %+v %v, want it refused as moving", r, err)
	}
	splitAndNote(t, s, routes, p, gp)
	r, err = s.RelayMany(ctx, []store.RelaySource{{Partition: src}}, 10, route, nil)
	if err != nil || len(r.Failed) > 0 {
		t.Fatalf("relay after the split: %+v %v", r, err)
	}
	if n := rdb.XLen(ctx, keys.For(c).Queue()).Val(); n != 1 {
		t.Errorf("child %d got %d jobs, want 1 (e2's; e1's went to %d before the split)", c, n, p)
	}
	if n := rdb.XLen(ctx, keys.For(a).Queue()).Val(); n != 1 {
		t.Errorf("target %d got %d jobs, want 1", a, n)
	}
	if n := rdb.XLen(ctx, keys.For(src).Outbox()).Val(); n != 0 {
		t.Errorf("%d outbox entries left", n)
	}
}

// TestSplitResumedAfterDrop: a splitter dies after its copies and drops,
// before the children go live. Its partition commits nothing more; the
// next owner finishes the split without emptying the children (they hold
// the only copy now) and every moving job is in the child once.
func TestSplitResumedAfterDrop(t *testing.T) {
	for _, phase := range []string{"copied", "dropped"} {
		t.Run(phase, func(t *testing.T) {
			if testing.Short() {
				t.Skip("needs redis-server")
			}
			ctx := context.Background()
			rdb := testenv.StartRedis(t).Client(t)
			s, routes := layoutStore(t, rdb)
			const p, c = 1, 5
			stay, move := splitKey("stay", p, 4, p, 8), splitKey("move", p, 4, c, 8)
			a, _ := lease.Claim(ctx, rdb, p, "w~1", "")
			if err := s.CommitBatch(ctx, p, a, &store.Batch{States: []store.StateWrite{{Entity: store.EntityRef{Type: "donor", Key: move}, Value: []byte("9")}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Enqueue(ctx, []store.Job{job("m1", move, p), job("s1", stay, p), job("m2", move, p)}); err != nil {
				t.Fatal(err)
			}
			reshardAndFreeze(t, s, routes, p, a)
			store.SetSplitStop(phase)
			_, err := s.SplitPartition(ctx, p, a, 8)
			store.SetSplitStop("")
			if err == nil {
				t.Fatal("the split was not stopped")
			}
			// The partition commits nothing more: its jobs have copies.
			if err := s.CommitBatch(ctx, p, a, &store.Batch{Done: []string{"s1"}}); !errors.Is(err, store.ErrSplitting) {
				t.Fatalf("commit in a copied partition: %v, want ErrSplitting", err)
			}
			b, err := lease.Claim(ctx, rdb, p, "w~2", "w~1")
			if err != nil {
				t.Fatal(err)
			}
			if done, err := s.FreezeForSplit(ctx, p, b, 8); err != nil || done {
				t.Fatalf("freeze by the next owner: done %v, %v", done, err)
			}
			if _, err := s.SplitPartition(ctx, p, b, 8); err != nil {
				t.Fatal(err)
			}
			read := func(part int) string {
				got, err := s.Read(ctx, map[int]string{part: store.StartID}, 100, -1)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, j := range got[part] {
					ids = append(ids, j.ID)
				}
				return fmt.Sprint(ids)
			}
			if got := read(c); got != "[m1 m2]" {
				t.Errorf("child's queue %s, want [m1 m2]", got)
			}
			if got := read(p); got != "[s1]" {
				t.Errorf("parent's queue %s, want [s1]", got)
			}
			if got := rdb.Get(ctx, keys.For(c).State("donor", move)).Val(); got != "9" {
				t.Errorf("moved state %q, want 9", got)
			}
		})
	}
}

// TestCancelAcrossSplit: cancels asked in partition p before its split for
// jobs that move (queued, delayed, parked and waiting behind it) follow
// them to the child with the time they were asked, where its owner loads
// them; the staying job's stays. A cancel asked while p is frozen, or
// asked in p after the split for a job that left it, is refused as moving
// (nothing recorded), so the caller finds the job again; one for a job
// still in p goes in.
func TestCancelAcrossSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	s, routes := layoutStore(t, rdb)
	const p, c = 1, 5
	stay, move := splitKey("stay", p, 4, p, 8), splitKey("move", p, 4, c, 8)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	// A parked job of move with one waiting behind it.
	if _, err := s.Enqueue(ctx, []store.Job{job("park", move, p), job("wait", move, p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	js := read[p]
	far := time.Now().Add(time.Hour).UnixMilli()
	parked := js[0]
	parked.Attempt, parked.NotBefore = 2, far
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Acked: []string{js[0].StreamID, js[1].StreamID},
		Keys: []store.KeyPlan{{Key: move, Park: &parked, Front: []store.Job{js[1]}}}}); err != nil {
		t.Fatal(err)
	}
	later := job("later-move", move, p)
	later.NotBefore = far
	if _, err := s.Enqueue(ctx, []store.Job{job("q-move", move, p), job("q-stay", stay, p), later}); err != nil {
		t.Fatal(err)
	}
	asked := time.UnixMilli(1_700_000_000_000)
	moving := []string{"q-move", "later-move", "park", "wait"}
	if err := s.RequestCancels(ctx, p, append(moving, "q-stay"), asked); err != nil {
		t.Fatal(err)
	}

	reshardAndFreeze(t, s, routes, p, grant)
	var mv *store.MovingError
	if err := s.RequestCancels(ctx, p, []string{"q-stay"}, time.Now()); !errors.As(err, &mv) || !mv.Frozen {
		t.Fatalf("cancel asked while p is frozen: %v, want a MovingError (frozen)", err)
	}
	st := splitAndNote(t, s, routes, p, grant)
	if st.Cancels != len(moving) {
		t.Errorf("split moved %d cancels, want %d", st.Cancels, len(moving))
	}
	for _, id := range moving {
		score, err := rdb.ZScore(ctx, keys.For(c).Cancels(), id).Result()
		if err != nil || int64(score) != asked.UnixMilli() {
			t.Errorf("cancel of %s in the child: %v %v, want asked at %d", id, score, err, asked.UnixMilli())
		}
	}
	if got := rdb.ZRange(ctx, keys.For(p).Cancels(), 0, -1).Val(); len(got) != 1 || got[0] != "q-stay" {
		t.Errorf("parent's cancels %v, want [q-stay]", got)
	}
	loaded, err := s.LoadCancels(ctx, c, 10)
	if err != nil || len(loaded) != len(moving) {
		t.Fatalf("child's owner loads %+v %v, want the %d moved cancels", loaded, err, len(moving))
	}
	// Asked in p after the split (found there before it): refused for the
	// job that left, taken for the one that stayed.
	if err := s.RequestCancels(ctx, p, []string{"q-move"}, time.Now()); !errors.As(err, &mv) || mv.Frozen {
		t.Fatalf("cancel asked in p for a job that moved: %v, want a MovingError (split)", err)
	}
	rdb.ZRem(ctx, keys.For(p).Cancels(), "q-stay")
	if err := s.RequestCancels(ctx, p, []string{"q-stay"}, time.Now()); err != nil {
		t.Fatalf("cancel asked in p for a job that stayed: %v", err)
	}
	if n := rdb.ZCard(ctx, keys.For(p).Cancels()).Val(); n != 1 {
		t.Errorf("parent holds %d cancels, want 1 (q-stay)", n)
	}
}

// TestReplayDeadAcrossSplit: a dead letter of a key that moved by a
// reshard is replayed into the key's new partition: queued there once,
// the letter and its record gone from the old one. A replay that stopped
// between its two steps (the letter left behind), sent again, drops the
// letter and queues nothing twice.
func TestReplayDeadAcrossSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	s, routes := layoutStore(t, rdb)
	const p, c = 1, 5
	move := splitKey("move", p, 4, c, 8)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, []store.Job{job("dies", move, p)}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	dead := read[p][0]
	dead.Errors = []string{"boom"}
	if err := s.CommitBatch(ctx, p, grant, &store.Batch{Acked: []string{dead.StreamID}, Dead: []store.DeadJob{{Job: dead, Error: "boom"}}}); err != nil {
		t.Fatal(err)
	}
	reshardAndFreeze(t, s, routes, p, grant)
	if n, err := s.ReplayDead(ctx, []string{"dies"}); !errors.Is(err, store.ErrMoving) || n != 0 {
		t.Fatalf("replay while the key's partition is frozen: %d %v, want refused as moving", n, err)
	}
	splitAndNote(t, s, routes, p, grant)
	letter := rdb.HGet(ctx, keys.For(p).Dead(), "dies").Val()
	if n, err := s.ReplayDead(ctx, []string{"dies"}); err != nil || n != 1 {
		t.Fatalf("replay after the split: %d %v, want 1", n, err)
	}
	kp, kc := keys.For(p), keys.For(c)
	if rdb.HExists(ctx, kp.Dead(), "dies").Val() || rdb.Exists(ctx, kp.Job("dies")).Val() != 0 {
		t.Errorf("the dead letter or its record is still in the old partition")
	}
	if n := rdb.XLen(ctx, kc.Queue()).Val(); n != 1 {
		t.Fatalf("the new partition's queue holds %d jobs, want the replayed one", n)
	}
	if got, err := s.Read(ctx, map[int]string{c: store.StartID}, 10, -1); err != nil || len(got[c]) != 1 || got[c][0].ID != "dies" || got[c][0].Attempt != 1 {
		t.Errorf("replayed job in %d: %+v %v, want dies at attempt 1", c, got[c], err)
	}
	// Stopped between queueing and dropping: the letter is back in p.
	rdb.HSet(ctx, kp.Dead(), "dies", letter)
	rdb.ZAdd(ctx, kp.DeadIndex(), redis.Z{Score: 1, Member: "dies"})
	if n, err := s.ReplayDead(ctx, []string{"dies"}); err != nil || n != 1 {
		t.Fatalf("replay again: %d %v, want the letter dropped", n, err)
	}
	if n := rdb.XLen(ctx, kc.Queue()).Val(); n != 1 {
		t.Errorf("the new partition's queue holds %d jobs after the replay sent again, want 1", n)
	}
	if rdb.HExists(ctx, kp.Dead(), "dies").Val() {
		t.Errorf("the letter left behind was not dropped")
	}
}
