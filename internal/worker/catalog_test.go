package worker

import (
	"errors"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/handlerset"
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
	if !errors.Is(err, ErrHandlerNotServed) || !strings.Contains(err.Error(), "worker w2") || !strings.Contains(err.Error(), "without it: w2") {
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
	if !errors.Is(err, ErrUnknownHandler) || !strings.Contains(err.Error(), "workers w1 serve it, workers w2 do not") {
		t.Fatalf("unknown on w2: %v", err)
	}
	err = c2.unknownHere("acount.add", old)
	if !strings.Contains(err.Error(), "this cluster serves: account.add, donor.donate") {
		t.Fatalf("unknown everywhere: %v", err)
	}
	if _, err := handlerset.FromMeta(metas["w1"]); err != nil {
		t.Fatal(err)
	}
}
