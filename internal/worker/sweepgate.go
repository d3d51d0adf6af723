package worker

import "sync"

// sweepGate keeps a partition's direct calls and batches from undoing
// each other's entity index: a batch writes a state it loaded without
// adding the key to its entity's index again (store.StateWrite.Existed),
// which is right only if no commit dropped the key from the index between
// the batch's load and its commit. Batches of a partition run one at a
// time, but a direct call's commit may come in between, and a commit
// drops the keys of expired states from their indexes (a state loaded
// just before it expired, then written again by the batch, would lose its
// entry). So a direct call's commit sweeps only while no batch of its
// partition is between load and commit, and a batch marks its loaded
// states only if no sweeping direct call's commit was under way at its
// load or started since.
type sweepGate struct {
	mu sync.Mutex
	m  map[int]*partitionSweeps
}

type partitionSweeps struct {
	batch bool   // a batch is between its load and the end of its commit
	calls int    // sweeping direct calls' commits under way
	seq   uint64 // sweeping direct calls' commits started so far
}

// sweepToken is what a batch saw of its partition's direct calls when it
// started.
type sweepToken struct {
	seq   uint64
	clean bool // no sweeping direct call's commit was under way
}

func (g *sweepGate) get(p int) *partitionSweeps {
	if g.m == nil {
		g.m = map[int]*partitionSweeps{}
	}
	ps := g.m[p]
	if ps == nil {
		ps = &partitionSweeps{}
		g.m[p] = ps
	}
	return ps
}

// batchStart is called before a batch of p loads; batchEnd once its
// commit returned or it gave up.
func (g *sweepGate) batchStart(p int) sweepToken {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.get(p)
	ps.batch = true
	return sweepToken{seq: ps.seq, clean: ps.calls == 0}
}

func (g *sweepGate) batchEnd(p int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.get(p).batch = false
}

// loadedStatesHold says whether the batch of p that started with t may
// commit the states it loaded as there (no direct call's commit could
// have swept since its load), asked right before it commits.
func (g *sweepGate) loadedStatesHold(p int, t sweepToken) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return t.clean && g.get(p).seq == t.seq
}

// callStart is called before a direct call's commit in p and says
// whether the commit may sweep; callEnd once it returned, with what
// callStart said.
func (g *sweepGate) callStart(p int) (sweep bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.get(p)
	if ps.batch {
		return false
	}
	ps.calls++
	ps.seq++
	return true
}

func (g *sweepGate) callEnd(p int, swept bool) {
	if !swept {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.get(p).calls--
}
