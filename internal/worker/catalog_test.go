package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/handlerset"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/sharding"
)

// catalogView is a fixed ring and fixed member handler sets.
type catalogView struct {
	ring *sharding.Ring
	mh   *memberHandlers
}

func (v catalogView) current() *sharding.Ring      { return v.ring }
func (v catalogView) handlerSets() *memberHandlers { return v.mh }

// TestCatalogRefusesWhatTheOwnerLacks: a job is refused when the owner of
// its partition publishes a set without its handler, naming the workers
// that lack it; accepted when the owner serves it or publishes nothing;
// and a handler this worker lacks is explained with who serves it.
func TestCatalogRefusesWhatTheOwnerLacks(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	ring, err := sharding.NewRing(cfg.Ring, []string{"w1", "w2", "w3"})
	if err != nil {
		t.Fatal(err)
	}
	full := map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1"}, "account.add": {Plugin: "chaos", Version: "1"}}
	old := map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1"}}
	metas := map[string]map[string]string{}
	for id, hs := range map[string]map[string]host.HandlerInfo{"w1": full, "w2": old} {
		m, err := localSet(hs).Meta()
		if err != nil {
			t.Fatal(err)
		}
		metas[id] = m
	}
	metas["w3"] = map[string]string{"version": "dev"} // publishes no set
	c := &handlerCatalog{self: "w1", local: staticHandlers{hs: full}, view: catalogView{ring: ring, mh: readHandlers(membersWithMeta(metas))}}
	ownedBy := map[string]int{}
	for p := range cfg.Ring.Partitions {
		if _, ok := ownedBy[ring.OwnerOf(p)]; !ok {
			ownedBy[ring.OwnerOf(p)] = p
		}
	}
	err = c.ownerLacks("account.add", "k", ownedBy["w2"], full)
	if !errors.Is(err, ErrHandlerNotServed) || !strings.Contains(err.Error(), "worker w2") || !strings.Contains(err.Error(), "workers without it: w2") {
		t.Fatalf("owner w2 lacks account.add: %v", err)
	}
	for _, owner := range []string{"w1", "w3"} {
		if err := c.ownerLacks("account.add", "k", ownedBy[owner], full); err != nil {
			t.Errorf("owner %s: %v, want accepted", owner, err)
		}
	}
	if err := c.ownerLacks("donor.donate", "k", ownedBy["w2"], full); err != nil {
		t.Errorf("a handler w2 serves: %v", err)
	}

	// On w2, which lacks account.add: w1 serves it.
	c2 := &handlerCatalog{self: "w2", local: staticHandlers{hs: old}, view: c.view}
	err = c2.unknownHere("account.add", old)
	if !errors.Is(err, ErrUnknownHandler) || !strings.Contains(err.Error(), "workers with it: w1; workers without it: w2") {
		t.Fatalf("unknown on w2: %v", err)
	}
	// w2 takes a job for account.add when its key's owner serves it, and
	// refuses it when its owner is w2 itself.
	ji := &jobIntake{cfg: cfg, catalog: c2}
	job := &workerpb.Job{Handler: "account.add", Key: "k", Payload: []byte(`{"any":"shape"}`)}
	if err := ji.admit(job, "j1", ownedBy["w1"], old); err != nil {
		t.Errorf("on w2, for a partition of w1: %v", err)
	}
	if err := ji.admit(job, "j1", ownedBy["w2"], old); !errors.Is(err, ErrUnknownHandler) {
		t.Errorf("on w2, for a partition of w2: %v", err)
	}
	if err := ji.admit(job, "bad id!", ownedBy["w1"], old); !errors.Is(err, ErrInvalidID) {
		t.Errorf("a bad id: %v", err)
	}
	err = c2.unknownHere("acount.add", old)
	if !strings.Contains(err.Error(), "this cluster serves: account.add, donor.donate") {
		t.Fatalf("unknown everywhere: %v", err)
	}
	if _, err := handlerset.FromMeta(metas["w1"]); err != nil {
		t.Fatal(err)
	}
}

// upgradingHandlers serves donor.donate, and also order.reserve once
// reloaded (a plugin upgrade that adds a handler).
type upgradingHandlers struct {
	idleHandlers
	mu       sync.Mutex
	reloaded bool
}

func (u *upgradingHandlers) Handlers() map[string]host.HandlerInfo {
	u.mu.Lock()
	defer u.mu.Unlock()
	hs := map[string]host.HandlerInfo{"donor.donate": {Plugin: "shop", Version: "1"}}
	if u.reloaded {
		hs["donor.donate"] = host.HandlerInfo{Plugin: "shop", Version: "2"}
		hs["order.reserve"] = host.HandlerInfo{Plugin: "shop", Version: "2"}
	}
	return hs
}

func (u *upgradingHandlers) Reload(context.Context) ([]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reloaded = true
	return []string{"shop@2"}, nil
}

// TestReloadPublishesTheNewHandlerSet: after a plugin reload that adds a
// handler, the worker's service meta names it, and the worker stays a
// member meanwhile.
func TestReloadPublishesTheNewHandlerSet(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	reg := discovery.NewStatic()
	cfg := DefaultConfig()
	cfg.ID, cfg.Advertise = "w1", "127.0.0.1:1"
	w, err := New(cfg, rdb, reg, &upgradingHandlers{}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	published := func() (handlerset.Set, bool) {
		ms, _ := reg.Healthy(context.Background())
		if len(ms) != 1 {
			return nil, false
		}
		s, err := handlerset.FromMeta(ms[0].Meta)
		return s, err == nil
	}
	waitUntil(t, "w1 a member", func() bool { _, ok := published(); return ok })
	if s, _ := published(); strings.Join(s.Handlers(), ",") != "donor.donate" {
		t.Fatalf("published %v before the reload", s)
	}
	if _, err := w.ReloadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, ok := published()
	if !ok || strings.Join(s.Handlers(), ",") != "donor.donate,order.reserve" || s[0].Version != "2" {
		t.Fatalf("published %v (member: %v) after the reload, want shop@2 with order.reserve", s, ok)
	}
}

// TestCatalogKeepsDeclarationsAcrossWorkers: a worker that lacks a plugin
// still refuses a submitted job for a handler a member publishes internal
// (even when the key's owner serves it), leaves that handler out of the
// ones it says may be submitted, and knows the entity types the member's
// handlers declare, so state of a declared entity may be asked of any
// worker. Emits to the internal handler stay allowed.
func TestCatalogKeepsDeclarationsAcrossWorkers(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	ring, err := sharding.NewRing(cfg.Ring, []string{"w1", "w2"})
	if err != nil {
		t.Fatal(err)
	}
	inv := map[string]host.HandlerInfo{
		"stock.add":      {Plugin: "inv", Version: "1", Entity: "inventory"},
		"order.reserved": {Plugin: "inv", Version: "1", Entity: "order", Internal: true},
		"donor.donate":   {Plugin: "donations", Version: "1", Entity: "donor"},
	}
	plain := map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1", Entity: "donor"}}
	metas := map[string]map[string]string{}
	for id, hs := range map[string]map[string]host.HandlerInfo{"w1": inv, "w2": plain} {
		if metas[id], err = localSet(hs).Meta(); err != nil {
			t.Fatal(err)
		}
	}
	if got := metas["w1"]["plugin-inv"]; got != "inv@1 order.reserved!,stock.add=inventory" {
		t.Fatalf("w1 publishes %q, want order.reserved internal and stock.add's entity", got)
	}
	view := catalogView{ring: ring, mh: readHandlers(membersWithMeta(metas))}
	c2 := &handlerCatalog{self: "w2", local: staticHandlers{hs: plain}, view: view}
	ownedByW1 := -1
	for p := range cfg.Ring.Partitions {
		if ring.OwnerOf(p) == "w1" {
			ownedByW1 = p
			break
		}
	}
	ji := &jobIntake{cfg: cfg, catalog: c2}
	job := &workerpb.Job{Handler: "order.reserved", Key: "o-1", Payload: []byte(`{}`)}
	err = ji.admit(job, "j1", ownedByW1, plain)
	if !errors.Is(err, ErrInternalHandler) || err.Error() != "handler order.reserved is internal: only other handlers may emit it" {
		t.Fatalf("on w2, an internal handler of w1's: %v", err)
	}
	if err := ji.admit(&workerpb.Job{Handler: "stock.add", Key: "s-1", Payload: []byte(`{}`)}, "j2", ownedByW1, plain); err != nil {
		t.Fatalf("on w2, a public handler of w1's owner: %v", err)
	}
	err = c2.unknownHere("stock.ad", plain)
	if !strings.Contains(err.Error(), "(this cluster serves: donor.donate, stock.add)") {
		t.Fatalf("unknown handler on w2: %v, want the internal order.reserved left out", err)
	}
	if got := strings.Join(c2.entities(plain), ","); got != "donor,inventory,order" {
		t.Fatalf("entities known on w2 = %s", got)
	}
	if err := checkEntity("inventory", c2.entities(plain)); err != nil {
		t.Fatalf("state of inventory on w2: %v", err)
	}
	if err := checkEntity("stock", c2.entities(plain)); !errors.Is(err, ErrUnknownEntity) ||
		!strings.Contains(err.Error(), "(this cluster's entities: donor, inventory, order)") {
		t.Fatalf("state of stock on w2: %v", err)
	}
	if !c2.known("order.reserved", plain) {
		t.Fatal("an emit to w1's internal order.reserved is refused on w2")
	}
}
