package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// TestCommitEverySection: one batch that uses every part of the commit at
// once (a direct call's guard, done, dead and rejected jobs with audit, results,
// states, acks, emits, and holds taken, extended, trimmed and passed on)
// lands whole, each part where it belongs.
func TestCommitEverySection(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	rdb := s.Client()
	p := 5
	k := keys.For(p)
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	// Key h is held by h1, with h2 and h3 waiting behind it.
	if _, err := s.Enqueue(ctx, []store.Job{job("h1", "h", p), job("h2", "h", p), job("h3", "h", p)}); err != nil {
		t.Fatal(err)
	}
	read, err := s.Read(ctx, map[int]string{p: store.StartID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 3 {
		t.Fatalf("read %d jobs, %v", len(read[p]), err)
	}
	hs := read[p]
	h1 := hs[0]
	h1.Attempt, h1.NotBefore = 2, time.Now().UnixMilli()
	err = s.CommitBatch(ctx, p, grant, &store.Batch{Acked: []string{hs[0].StreamID, hs[1].StreamID, hs[2].StreamID},
		Keys: []store.KeyPlan{{Key: "h", Park: &h1, Front: []store.Job{hs[1], hs[2]}}}})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := s.Enqueue(ctx, []store.Job{job("a1", "a", p), job("b1", "b", p), job("b2", "b", p),
		job("b3", "b", p), job("c1", "c", p), job("r1", "r", p)}); err != nil {
		t.Fatal(err)
	}
	read, err = s.Read(ctx, map[int]string{p: hs[2].StreamID}, 10, 10*time.Millisecond)
	if err != nil || len(read[p]) != 6 {
		t.Fatalf("read %d jobs, %v", len(read[p]), err)
	}
	js := read[p]
	var acked []string
	for _, j := range js {
		acked = append(acked, j.StreamID)
	}
	far := time.Now().Add(time.Hour).UnixMilli()
	b1 := js[1]
	b1.Attempt, b1.NotBefore, b1.Errors = 2, far, []string{"attempt 1: later"}
	c1 := js[4]
	c1.Attempt, c1.Errors = 3, []string{"attempt 3: no"}
	g1 := job("g1", "g", p)
	donor := func(key string) store.EntityRef { return store.EntityRef{Type: "donor", Key: key} }
	b := &store.Batch{
		Guard:    store.NewGuard(g1, "donor", nil, false),
		Done:     []string{"g1", "a1", "h1", "h2"},
		Attempts: map[string]int{"h1": 2},
		Dead:     []store.DeadJob{{Job: c1, Error: "no"}},
		Rejected: []store.Rejection{{JobID: "r1", Attempts: 1, Reason: "out of stock: 3 left"}},
		Acked:    acked,
		States:   []store.StateWrite{{Entity: donor("a"), Value: []byte(`{"a":1}`)}, {Entity: donor("g"), Value: []byte(`{"g":1}`)}},
		Results:  []store.Result{{JobID: "a1", Value: []byte("ra")}, {JobID: "g1", Value: []byte("rg")}},
		Emits:    []store.Job{{ID: store.EmittedID("a1", 0), Handler: "campaign.credit", Key: "c", Payload: []byte(`{}`)}},
		Unparked: []string{"h1", "h2"},
		Keys: []store.KeyPlan{
			{Key: "b", Park: &b1, Front: []store.Job{js[2]}, Back: []store.Job{js[3]}},
			{Key: "h", Trim: 1, Next: true},
		},
	}
	before := time.Now().UnixMilli()
	if err := s.CommitBatch(ctx, p, grant, b); err != nil {
		t.Fatal(err)
	}

	for id, want := range map[string]string{"g1": "d", "a1": "d", "h1": "d", "h2": "d", "c1": "x", "r1": "n", "b1": "", "b2": "", "h3": ""} {
		if st, _, _, _ := recordOf(t, rdb, k.Job(id)); st != want {
			t.Errorf("status of %s %q, want %q", id, st, want)
		}
	}
	if _, _, a, _ := recordOf(t, rdb, k.Job("h1")); a != "2" {
		t.Errorf("attempts of h1 %q, want 2", a)
	}
	if _, _, _, e := recordOf(t, rdb, k.Job("a1")); e != "1" {
		t.Errorf("emitted count of a1 %q, want 1", e)
	}
	for id, want := range map[string]string{"a1": "ra", "g1": "rg"} {
		if r, _ := rdb.HGet(ctx, k.Job(id), "r").Result(); r != want {
			t.Errorf("result of %s %q, want %q", id, r, want)
		}
	}
	for key, want := range map[string]string{"a": `{"a":1}`, "g": `{"g":1}`} {
		if v, _ := rdb.Get(ctx, k.State("donor", key)).Result(); v != want {
			t.Errorf("state of %s %q, want %q", key, v, want)
		}
	}
	if n, _ := rdb.XLen(ctx, k.Queue()).Result(); n != 0 {
		t.Errorf("queue holds %d entries, want 0 (all acked)", n)
	}
	if n, _ := rdb.XLen(ctx, k.Outbox()).Result(); n != 1 {
		t.Errorf("outbox entries %d, want 1", n)
	}
	if dl, err := s.DeadLetters(ctx, []string{"c1"}); err != nil || len(dl) != 1 || dl[0].Attempts != 3 {
		t.Errorf("dead letter of c1 %+v %v", dl, err)
	}
	if n, _ := rdb.ZCard(ctx, k.DeadIndex()).Result(); n != 1 {
		t.Errorf("dead index holds %d, want 1", n)
	}
	if n, _ := rdb.XLen(ctx, k.Audit()).Result(); n != 6 {
		t.Errorf("audit entries %d, want 6 (4 done, 1 dead, 1 rejected)", n)
	}
	sts, err := s.StatusesIn(ctx, []string{"r1", "a1"}, []int{p, p})
	if err != nil || !sts[0].Finished || !sts[0].Rejected || sts[0].Dead || sts[0].Error != "out of stock: 3 left" || sts[0].Result != nil {
		t.Errorf("status of the rejected r1 %+v %v, want finished, rejected, with its reason and no result", sts[0], err)
	}
	if sts[1].Rejected || sts[1].Error != "" {
		t.Errorf("status of the done a1 %+v", sts[1])
	}
	if dl, _ := s.DeadLetters(ctx, []string{"r1"}); len(dl) != 0 {
		t.Errorf("the rejected r1 is a dead letter: %+v", dl)
	}
	holds, _ := rdb.HGetAll(ctx, k.Holds()).Result()
	if len(holds) != 2 || holds["b"] != "b1" || holds["h"] != "h3" {
		t.Errorf("holds %v, want b by b1 and h by h3", holds)
	}
	parked, _ := rdb.ZRangeWithScores(ctx, k.Parked(), 0, -1).Result()
	if len(parked) != 2 || parked[0].Member != "h3" || int64(parked[0].Score) < before || parked[1].Member != "b1" || int64(parked[1].Score) != far {
		t.Errorf("parked %v, want h3 due now and b1 due in an hour", parked)
	}
	bodies, _ := rdb.HKeys(ctx, k.Bodies()).Result()
	slices.Sort(bodies)
	if !slices.Equal(bodies, []string{"b1", "b2", "b3", "h3"}) {
		t.Errorf("bodies %v, want b1 b2 b3 h3", bodies)
	}
	if w, _ := rdb.LRange(ctx, k.Waiting("b"), 0, -1).Result(); !slices.Equal(w, []string{"b2", "b3"}) {
		t.Errorf("waiting behind b %v, want b2 b3", w)
	}
	if n, _ := rdb.LLen(ctx, k.Waiting("h")).Result(); n != 0 {
		t.Errorf("%d waiting behind h, want none", n)
	}
}
