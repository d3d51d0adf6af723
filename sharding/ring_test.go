package sharding

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/buraksezer/consistent"
)

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("worker-%d", i+1)
	}
	return out
}

func TestPartitionOfMatchesConsistent(t *testing.T) {
	t.Parallel()
	c := consistent.New(nil, consistent.Config{Hasher: hasher{}, PartitionCount: 271, ReplicationFactor: 20, Load: 1.25})
	for i := range 10000 {
		key := fmt.Sprintf("donor-%d", i)
		if got, want := PartitionOf(key, 271), c.FindPartitionID([]byte(key)); got != want {
			t.Fatalf("PartitionOf(%q) = %d, consistent says %d", key, got, want)
		}
	}
}

func TestPartitionOfSpreadsKeys(t *testing.T) {
	t.Parallel()
	const p, n = 64, 64000
	counts := make([]int, p)
	for i := range n {
		counts[PartitionOf(fmt.Sprintf("k%d", i), p)]++
	}
	for part, c := range counts {
		// Expected 1000 per partition; a hash this skewed would be a bug.
		if c < 800 || c > 1200 {
			t.Errorf("partition %d got %d keys of %d, expected about %d", part, c, n, n/p)
		}
	}
}

func TestBoundedLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ partitions, members int }{
		{64, 1}, {64, 2}, {64, 3}, {64, 5}, {64, 7}, {271, 10}, {1024, 33}, {7, 3},
	} {
		t.Run(fmt.Sprintf("P%d_M%d", tc.partitions, tc.members), func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Partitions = tc.partitions
			r, err := NewRing(cfg, ids(tc.members))
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for id, n := range r.Loads() {
				if n > r.MaxLoad() {
					t.Errorf("%s owns %d partitions, bound is %d", id, n, r.MaxLoad())
				}
				total += n
			}
			if total != tc.partitions {
				t.Errorf("owned partitions sum to %d, want %d", total, tc.partitions)
			}
			for p := range tc.partitions {
				if r.OwnerOf(p) == "" {
					t.Errorf("partition %d has no owner", p)
				}
			}
		})
	}
}

func TestAllWorkersAgree(t *testing.T) {
	t.Parallel()
	members := ids(5)
	want, err := NewRing(DefaultConfig(), members)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		// Each worker sees the members in its own order, some twice.
		view := append(slices.Clone(members), members[rng.IntN(len(members))])
		rng.Shuffle(len(view), func(i, j int) { view[i], view[j] = view[j], view[i] })
		got, err := NewRing(DefaultConfig(), view)
		if err != nil {
			t.Fatal(err)
		}
		if moves := Moves(want, got); len(moves) != 0 {
			t.Fatalf("view %v places %d partitions differently: %v", view, len(moves), moves[:1])
		}
	}
}

func TestMinimalMovement(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Partitions = 271
	before, _ := NewRing(cfg, ids(4))
	after, _ := NewRing(cfg, ids(5))
	moves := Moves(before, after)
	ideal := cfg.Partitions / 5
	t.Logf("adding a fifth member moved %d partitions; ideal %d", len(moves), ideal)
	// Bounded load costs some extra movement; twice the ideal would mean
	// placement is not consistent at all.
	if len(moves) > 2*ideal {
		t.Errorf("adding one member moved %d partitions, ideal is %d", len(moves), ideal)
	}
	for _, m := range moves {
		if m.To != "worker-5" && m.From == "" {
			t.Errorf("partition %d had no owner before", m.Partition)
		}
	}
	removed, _ := NewRing(cfg, ids(4)[:3])
	for _, m := range Moves(before, removed) {
		if m.From != "worker-4" && m.To == "" {
			t.Errorf("partition %d lost its owner", m.Partition)
		}
	}
}

func TestEmptyRing(t *testing.T) {
	t.Parallel()
	r, err := NewRing(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.OwnerOf(0) != "" || len(r.PartitionsOf("x")) != 0 || r.MaxLoad() != 0 {
		t.Fatal("an empty ring must own nothing")
	}
	full, _ := NewRing(DefaultConfig(), ids(2))
	if got := len(Moves(nil, full)); got != DefaultPartitions {
		t.Fatalf("from nothing, %d partitions moved, want %d", got, DefaultPartitions)
	}
	if got := len(Moves(full, r)); got != DefaultPartitions {
		t.Fatalf("to nothing, %d partitions moved, want %d", got, DefaultPartitions)
	}
}

func TestOwnerOfKey(t *testing.T) {
	t.Parallel()
	r, _ := NewRing(DefaultConfig(), ids(3))
	p, owner := r.OwnerOfKey("alice")
	if p != PartitionOf("alice", DefaultPartitions) || owner != r.OwnerOf(p) || !slices.Contains(r.PartitionsOf(owner), p) {
		t.Fatalf("OwnerOfKey(alice) = %d,%s inconsistent with the ring", p, owner)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Partitions = 0 }, "partitions must be between"},
		{func(c *Config) { c.Partitions = MaxPartitions + 1 }, "partitions must be between"},
		{func(c *Config) { c.Load = 1 }, "load must be"},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if _, err := NewRing(DefaultConfig(), []string{""}); err == nil {
		t.Fatal("an empty member id must be refused")
	}
}
