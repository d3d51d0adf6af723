package worker

import (
	"sync"

	"github.com/corralhq/corral/internal/lease"
)

// grants is the table of partitions this worker processes, each with the
// grant it commits under, and of those it gave up whose release Redis has
// not confirmed yet. The ownership controller writes it; the executor and
// the call router read it, and drop a partition whose commit was fenced.
type grants struct {
	mu    sync.Mutex
	owned map[int]lease.Grant // partition → the grant we commit under
	// releasing holds the partitions given up whose release Redis has not
	// confirmed yet; they are released again until it does.
	releasing map[int]bool
	// batches is held (shared) while a batch runs, so giving a partition up
	// waits for the batch in flight.
	batches sync.RWMutex
	// suspended holds owned partitions nothing may run in for now: a
	// partition being split, while what it holds is copied.
	suspended map[int]bool
	// idle, when set, says an owned partition has nothing to run yet (a
	// reshard's child whose parent is not split).
	idle func(p int) bool
}

func newGrants() *grants {
	return &grants{owned: map[int]lease.Grant{}, releasing: map[int]bool{}, suspended: map[int]bool{}}
}

// grantOf is the grant partition p is held under, if it is.
func (g *grants) grantOf(p int) (lease.Grant, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.owned[p]
	return e, ok
}

func (g *grants) owns(p int) bool {
	_, ok := g.grantOf(p)
	return ok
}

// snapshot copies the owned partitions and their grants.
func (g *grants) snapshot() map[int]lease.Grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[int]lease.Grant, len(g.owned))
	for p, e := range g.owned {
		out[p] = e
	}
	return out
}

// active is snapshot less the partitions nothing may run in now
// (suspended, or idle): those the executor and direct calls serve.
func (g *grants) active() map[int]lease.Grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[int]lease.Grant, len(g.owned))
	for p, e := range g.owned {
		if !g.stillLocked(p) {
			out[p] = e
		}
	}
	return out
}

// activeGrant is grantOf for a partition that may run jobs now.
func (g *grants) activeGrant(p int) (lease.Grant, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.owned[p]
	if !ok || g.stillLocked(p) {
		return lease.Grant{}, false
	}
	return e, true
}

// stillLocked says p may not run jobs now (g.mu held).
func (g *grants) stillLocked(p int) bool {
	return g.suspended[p] || g.idle != nil && g.idle(p)
}

// suspend stops every batch and direct call of p and waits for those in
// flight; p stays owned.
func (g *grants) suspend(p int) {
	g.mu.Lock()
	g.suspended[p] = true
	g.mu.Unlock()
	g.waitBatches()
}

// resumeIf lets the suspended partitions for which ok is true run again.
func (g *grants) resumeIf(ok func(p int) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range g.suspended {
		if ok(p) {
			delete(g.suspended, p)
		}
	}
}

// resume lets p run again.
func (g *grants) resume(p int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.suspended, p)
}

func (g *grants) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.owned)
}

// add records a new grant of p.
func (g *grants) add(p int, grant lease.Grant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.owned[p] = grant
}

// drop stops partition p if it is still held under grant (a fenced commit).
func (g *grants) drop(p int, grant lease.Grant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.owned[p] == grant {
		delete(g.owned, p)
	}
}

// dropAll forgets every grant (the lease is gone) and says how many.
func (g *grants) dropAll() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.owned)
	g.owned = map[int]lease.Grant{}
	return n
}

// giveUp stops processing parts, marks them releasing and waits for the
// batch in flight; it returns how many of them were owned.
func (g *grants) giveUp(parts []int) int {
	n := 0
	g.mu.Lock()
	for _, p := range parts {
		if _, ok := g.owned[p]; ok {
			n++
		}
		delete(g.owned, p)
		g.releasing[p] = true
	}
	g.mu.Unlock()
	g.waitBatches()
	return n
}

// waitBatches waits for the batches in flight; those that start after see
// the partitions given up or suspended.
func (g *grants) waitBatches() {
	g.batches.Lock()
	g.batches.Unlock() //nolint:staticcheck // only the wait is wanted
}

// released records that Redis confirmed p's release.
func (g *grants) released(p int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.releasing, p)
}

// pending lists the partitions given up whose release has not gone
// through yet.
func (g *grants) pending() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]int, 0, len(g.releasing))
	for p := range g.releasing {
		out = append(out, p)
	}
	return out
}

// runBatch runs f while p is held under grant, and keeps p from being
// given up until f returns. It reports whether f ran.
func (g *grants) runBatch(p int, grant lease.Grant, f func()) bool {
	g.batches.RLock()
	defer g.batches.RUnlock()
	if cur, ok := g.activeGrant(p); !ok || cur != grant {
		return false
	}
	f()
	return true
}
