package lease

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
)

// TestLayoutSwap: a layout is stored over the version it was made from
// only, is read back whole, and its change is announced to claimers.
func TestLayoutSwap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	sub := rdb.Subscribe(ctx, EventsChannel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is confirmed
		t.Fatal(err)
	}
	events := sub.Channel()
	if _, changed, err := LoadLayout(ctx, rdb, Layout{}); err != nil || changed {
		t.Fatalf("no layout yet: changed %v, err %v", changed, err)
	}
	first := Layout{Members: []Member{{ID: "w1", Token: "w1~a"}, {ID: "w2", Token: "w2~b"}}, Owners: []string{"w1", "w2", "", "w2"}}
	got, ok, err := SwapLayout(ctx, rdb, first)
	if err != nil || !ok || got.Version != 1 {
		t.Fatalf("first swap: %v, %v, %v", got, ok, err)
	}
	select {
	case m := <-events:
		if m.Payload != "layout 1" {
			t.Errorf("announced %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Error("the change was not announced")
	}
	stale := first // made from version 0 too
	stale.Owners = []string{"w2", "w2", "w2", "w2"}
	if _, ok, err := SwapLayout(ctx, rdb, stale); err != nil || ok {
		t.Fatalf("a layout made from version 0 replaced version 1: %v, %v", ok, err)
	}
	read, changed, err := LoadLayout(ctx, rdb, Layout{})
	if err != nil || !changed || read.Version != 1 || !slices.Equal(read.Owners, first.Owners) || !slices.Equal(read.Members, first.Members) {
		t.Fatalf("read back %+v, changed %v, err %v", read, changed, err)
	}
	if _, changed, err := LoadLayout(ctx, rdb, read); err != nil || changed {
		t.Fatalf("known layout read as changed: %v, %v", changed, err)
	}
	// A Redis restored to a snapshot counts versions on from an older one:
	// the same version with other owners is a change.
	if read.Nonce == "" || read.Nonce != got.Nonce {
		t.Fatalf("stored nonce %q, read %q", got.Nonce, read.Nonce)
	}
	if _, changed, err := LoadLayout(ctx, rdb, Layout{Version: 1, Nonce: "other"}); err != nil || !changed {
		t.Fatalf("the same version with another nonce read as unchanged: %v, %v", changed, err)
	}
	bad := Layout{Version: 1, Members: []Member{{ID: "w1"}}, Owners: []string{"w9"}}
	if _, _, err := SwapLayout(ctx, rdb, bad); err == nil {
		t.Error("a layout naming a non-member was stored")
	}
	unsorted := Layout{Version: 1, Members: []Member{{ID: "w2"}, {ID: "w1"}}, Owners: []string{"w1"}}
	if _, _, err := SwapLayout(ctx, rdb, unsorted); err == nil {
		t.Error("a layout with unsorted members was stored")
	}
}
