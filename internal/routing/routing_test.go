package routing

import (
	"fmt"
	"testing"

	"github.com/corralhq/corral/sharding"
)

// Every key of an old partition goes to one of its children once the
// partition is split, stays in it before, and never moves a second time.
func TestSplitRouting(t *testing.T) {
	const P, N = 64, 256
	v := View{P: P, N: N, Done: make([]bool, P)}
	keys := make([]string, 20000)
	for i := range keys {
		keys[i] = fmt.Sprintf("donor-%d", i)
	}
	before := map[string]int{}
	for _, k := range keys {
		p := v.PartitionOf(k)
		if p != sharding.PartitionOf(k, P) {
			t.Fatalf("%s: before any split it goes to %d, want its old partition %d", k, p, sharding.PartitionOf(k, P))
		}
		before[k] = p
	}
	moves := map[string]int{}
	for p := 0; p < P; p++ {
		v.Done[p] = true
		for _, k := range keys {
			q := v.PartitionOf(k)
			old := sharding.PartitionOf(k, P)
			switch {
			case old > p && q != old:
				t.Fatalf("%s of partition %d moved to %d before its split", k, old, q)
			case old <= p && q != sharding.PartitionOf(k, N):
				t.Fatalf("%s of split partition %d goes to %d, want %d", k, old, q, sharding.PartitionOf(k, N))
			case q%P != old:
				t.Fatalf("%s of partition %d goes to %d, not one of its children", k, old, q)
			}
			if q != before[k] {
				moves[k]++
				before[k] = q
			}
		}
	}
	moved := 0
	for k, n := range moves {
		if n > 1 {
			t.Fatalf("%s changed partition %d times", k, n)
		}
		moved++
	}
	// A key stays in its old partition with chance P/N.
	if want := len(keys) * (N - P) / N; moved < want*9/10 || moved > want*11/10 {
		t.Errorf("%d of %d keys moved, want about %d", moved, len(keys), want)
	}
	t.Logf("%d of %d keys moved, each once", moved, len(keys))
}

// Modulus, Pending, Parent and Children during and after a reshard.
func TestViewDuringAndAfter(t *testing.T) {
	v := View{P: 4, N: 8, Done: []bool{true, false, false, false}}
	if got := v.Partitions(); got != 8 {
		t.Errorf("partitions during a reshard = %d, want 8 (children have owners)", got)
	}
	for q, want := range map[int]int{0: 8, 1: 4, 4: 8, 5: 8} {
		if got := v.Modulus(q); got != want {
			t.Errorf("modulus of %d = %d, want %d", q, got, want)
		}
	}
	for q, want := range map[int]bool{0: false, 1: false, 4: false, 5: true, 7: true} {
		if got := v.Pending(q); got != want {
			t.Errorf("pending(%d) = %v, want %v", q, got, want)
		}
	}
	if got := v.Children(1); fmt.Sprint(got) != "[5]" {
		t.Errorf("children of 1 = %v, want [5]", got)
	}
	// A key of split partition 0 that went to 4 has its old records in 0.
	var moved, stayed string
	for i := 0; moved == "" || stayed == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		switch {
		case sharding.PartitionOf(k, 4) == 0 && sharding.PartitionOf(k, 8) == 4:
			moved = k
		case sharding.PartitionOf(k, 4) == 0 && sharding.PartitionOf(k, 8) == 0:
			stayed = k
		}
	}
	if got := v.Parent(moved, 4, 0); got != 0 {
		t.Errorf("parent of %s in 4 = %d, want 0", moved, got)
	}
	if got := v.Parent(stayed, 0, 0); got != -1 {
		t.Errorf("parent of %s, which stayed in 0, = %d, want -1", stayed, got)
	}
	after := View{P: 8, Prev: 4, PriorUntil: 1000}
	if got := after.Parent(moved, 4, 999); got != 0 {
		t.Errorf("after the reshard, within the window: parent = %d, want 0", got)
	}
	if got := after.Parent(moved, 4, 1000); got != -1 {
		t.Errorf("after the window: parent = %d, want -1", got)
	}
	if after.Modulus(3) != 8 || after.Resharding() || after.Pending(5) {
		t.Errorf("after the reshard every partition is a plain one of 8")
	}
}
