package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// commitStates commits writes in their keys' partitions, claiming each.
func commitStates(t *testing.T, s *store.Store, writes ...store.StateWrite) {
	t.Helper()
	ctx := context.Background()
	byP := map[int][]store.StateWrite{}
	for _, w := range writes {
		p := sharding.PartitionOf(w.Entity.Key, s.Partitions())
		byP[p] = append(byP[p], w)
	}
	for p, ws := range byP {
		g, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CommitBatch(ctx, p, g, &store.Batch{States: ws}); err != nil {
			t.Fatal(err)
		}
		if _, err := lease.Release(ctx, s.Client(), p, "w~1"); err != nil {
			t.Fatal(err)
		}
	}
}

func listEntities(t *testing.T, s *store.Store, entity, prefix string, limit int) []string {
	t.Helper()
	var out []string
	cursor := ""
	for range 10000 {
		page, next, err := s.ListEntities(context.Background(), entity, prefix, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d keys, limit %d", len(page), limit)
		}
		for _, k := range page {
			out = append(out, k.Key)
		}
		if next == "" {
			return out
		}
		cursor = next
	}
	t.Fatal("the listing never ended")
	return nil
}

func TestListEntitiesPagesEachKeyOnce(t *testing.T) {
	s := setup(t)
	var writes []store.StateWrite
	var want []string
	for i := range 250 {
		key := fmt.Sprintf("k%03d", i)
		want = append(want, key)
		writes = append(writes, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: key}, Value: []byte(`{}`)})
	}
	writes = append(writes, store.StateWrite{Entity: store.EntityRef{Type: "campaign", Key: "k001"}, Value: []byte(`{}`)})
	commitStates(t, s, writes...)
	for _, limit := range []int{1, 7, 100, 1000} {
		got := listEntities(t, s, "donor", "", limit)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: listed %d keys, want %d (%v...)", limit, len(got), len(want), got[:min(5, len(got))])
		}
	}
	if got := listEntities(t, s, "donor", "k01", 3); len(got) != 10 {
		t.Errorf("prefix k01: %v, want the 10 keys k010..k019", got)
	}
	if got := listEntities(t, s, "campaign", "", 10); !slices.Equal(got, []string{"k001"}) {
		t.Errorf("campaign keys: %v", got)
	}
	if _, _, err := s.ListEntities(context.Background(), "donor", "", "not-a-cursor", 10); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

func TestDeleteAndExpireLeaveTheIndex(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	ref := func(k string) store.EntityRef { return store.EntityRef{Type: "donor", Key: k} }
	commitStates(t, s,
		store.StateWrite{Entity: ref("keep"), Value: []byte(`1`)},
		store.StateWrite{Entity: ref("gone"), Value: []byte(`1`)},
		store.StateWrite{Entity: ref("brief"), Value: []byte(`1`), TTL: 300 * time.Millisecond})
	p := sharding.PartitionOf("brief", s.Partitions())
	if ttl := s.Client().PTTL(ctx, keys.For(p).State("donor", "brief")).Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("TTL of a state written with one: %v", ttl)
	}
	commitStates(t, s, store.StateWrite{Entity: ref("gone"), Delete: true},
		store.StateWrite{Entity: ref("brief"), Touch: true, TTL: 400 * time.Millisecond})
	if ttl := s.Client().PTTL(ctx, keys.For(p).State("donor", "brief")).Val(); ttl <= 300*time.Millisecond {
		t.Fatalf("TTL after a touch: %v", ttl)
	}
	if got := listEntities(t, s, "donor", "", 10); !slices.Equal(sortedKeys(got), []string{"brief", "keep"}) {
		t.Fatalf("after a delete: %v", got)
	}
	// brief's touched TTL (400ms) runs out: its state key is gone.
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := s.Client().Exists(ctx, keys.For(p).State("donor", "brief")).Val(); n != 0 {
			return fmt.Errorf("brief's state is still there, TTL %v", s.Client().PTTL(ctx, keys.For(p).State("donor", "brief")).Val())
		}
		return nil
	})
	if got := listEntities(t, s, "donor", "", 10); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("after the TTL: %v", got)
	}
	// The next commit of a state in brief's partition drops it from the index.
	other := ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprint("other-", i); sharding.PartitionOf(k, s.Partitions()) == p {
			other = k
		}
	}
	commitStates(t, s, store.StateWrite{Entity: ref(other), Value: []byte(`1`)})
	if ks := s.Client().ZRange(ctx, keys.For(p).Entities("donor"), 0, -1).Val(); slices.Contains(ks, "brief") {
		t.Errorf("index of partition %d still holds the expired key: %v", p, ks)
	}
	if n := s.Client().ZCard(ctx, keys.For(p).Expiring()).Val(); n != 0 {
		t.Errorf("%d states still listed as expiring", n)
	}
}

func sortedKeys(s []string) []string { slices.Sort(s); return s }

// A write of a state the batch loaded (Existed) leaves the entity index
// as it is: its key is there from the write that made the state. A write
// with a TTL adds it all the same.
func TestLoadedStateWriteLeavesTheIndex(t *testing.T) {
	s := setup(t)
	val := []byte(`{"n":1}`)
	commitStates(t, s, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: "ann"}, Value: val})
	commitStates(t, s, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: "ann"}, Value: []byte(`{"n":2}`), Existed: true})
	if got := listEntities(t, s, "donor", "", 10); !slices.Equal(got, []string{"ann"}) {
		t.Fatalf("after a rewrite: %v, want [ann]", got)
	}
	p := sharding.PartitionOf("ann", s.Partitions())
	if got, _ := s.Client().Get(context.Background(), keys.For(p).State("donor", "ann")).Result(); got != `{"n":2}` {
		t.Fatalf("state after a rewrite: %s", got)
	}
	// A key the index lacks stays out of it when written as loaded: the
	// write did not touch the index.
	commitStates(t, s, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: "bob"}, Value: val, Existed: true})
	if got := listEntities(t, s, "donor", "", 10); !slices.Equal(got, []string{"ann"}) {
		t.Fatalf("a write as loaded added to the index: %v", got)
	}
	commitStates(t, s, store.StateWrite{Entity: store.EntityRef{Type: "donor", Key: "bob"}, Value: val, Existed: true, TTL: time.Hour})
	if got := listEntities(t, s, "donor", "", 10); len(got) != 2 || !slices.Contains(got, "bob") {
		t.Fatalf("a write with a TTL: %v, want ann and bob", got)
	}
}

// A commit with NoSweep leaves an expired state's key in its index (the
// next commit without drops it); a put (a state the batch loaded, written
// without a TTL) sweeps as a state write does.
func TestNoSweepLeavesExpiredKeys(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	ref := func(k string) store.EntityRef { return store.EntityRef{Type: "donor", Key: k} }
	commitStates(t, s, store.StateWrite{Entity: ref("brief"), Value: []byte(`1`), TTL: 50 * time.Millisecond})
	p := sharding.PartitionOf("brief", s.Partitions())
	other := ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprint("other-", i); sharding.PartitionOf(k, s.Partitions()) == p {
			other = k
		}
	}
	commitStates(t, s, store.StateWrite{Entity: ref(other), Value: []byte(`1`)})
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := s.Client().Exists(ctx, keys.For(p).State("donor", "brief")).Val(); n != 0 {
			return fmt.Errorf("brief's state is still there")
		}
		return nil
	})
	indexed := func() bool {
		return slices.Contains(s.Client().ZRange(ctx, keys.For(p).Entities("donor"), 0, -1).Val(), "brief")
	}
	g, err := lease.Claim(ctx, s.Client(), p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	put := store.StateWrite{Entity: ref(other), Value: []byte(`2`), Existed: true}
	if err := s.CommitBatch(ctx, p, g, &store.Batch{States: []store.StateWrite{put}, NoSweep: true}); err != nil {
		t.Fatal(err)
	}
	if !indexed() {
		t.Fatalf("a commit with NoSweep dropped an expired key from the index")
	}
	if err := s.CommitBatch(ctx, p, g, &store.Batch{States: []store.StateWrite{put}}); err != nil {
		t.Fatal(err)
	}
	if indexed() {
		t.Fatalf("a put without NoSweep left an expired key in the index")
	}
}
