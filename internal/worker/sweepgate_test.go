package worker

import "testing"

func TestSweepGate(t *testing.T) {
	var g sweepGate
	// Nothing else going on: the batch keeps its loaded states, and a
	// direct call afterwards sweeps.
	tok := g.batchStart(1)
	if !g.loadedStatesHold(1, tok) {
		t.Fatal("a batch alone lost its loaded states")
	}
	g.batchEnd(1)
	if !g.callStart(1) {
		t.Fatal("a direct call with no batch under way may not sweep")
	}
	// A batch starting while that call's commit is under way.
	tok = g.batchStart(1)
	g.callEnd(1, true)
	if g.loadedStatesHold(1, tok) {
		t.Fatal("a batch loaded during a direct call's commit kept its loaded states")
	}
	g.batchEnd(1)
	// A direct call during a batch does not sweep, so the batch keeps
	// its loaded states.
	tok = g.batchStart(1)
	if g.callStart(1) {
		t.Fatal("a direct call swept while a batch was under way")
	}
	g.callEnd(1, false)
	if !g.loadedStatesHold(1, tok) {
		t.Fatal("a batch lost its loaded states to a direct call that did not sweep")
	}
	// Other partitions are not concerned.
	tok = g.batchStart(2)
	if !g.callStart(3) {
		t.Fatal("a batch of partition 2 kept partition 3's direct call from sweeping")
	}
	g.callEnd(3, true)
	if !g.loadedStatesHold(2, tok) {
		t.Fatal("a direct call in partition 3 took partition 2's loaded states")
	}
	g.batchEnd(2)
}
