package sharding

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Config shapes the ring. Every worker of a cluster must use the same values,
// or their placements differ (safety still holds through fencing, but work
// would bounce between owners).
type Config struct {
	// Partitions is P, fixed when the cluster is created.
	Partitions int
	// Load bounds any member's share at ⌈Load × P / members⌉ partitions.
	// Closer to 1 evens the shares out but moves more partitions on a
	// membership change (docs/scaling.md measures both).
	Load float64
}

// DefaultConfig returns the settings Corral ships with.
func DefaultConfig() Config {
	return Config{Partitions: DefaultPartitions, Load: 1.10}
}

// Validate explains what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("partitions must be between 1 and %d, got %d", MaxPartitions, c.Partitions))
	}
	if c.Load <= 1 || math.IsNaN(c.Load) || math.IsInf(c.Load, 0) {
		errs = append(errs, fmt.Errorf("load must be a finite number above 1 (1.10 is usual), got %v", c.Load))
	}
	return errors.Join(errs...)
}

// Ring is an immutable placement of partitions on members. Build a new one
// when membership changes.
type Ring struct {
	cfg     Config
	members []string
	owners  []string // partition → member id; "" when there are no members
}

// NewRing places cfg.Partitions partitions on members (ids; order and
// duplicates do not matter). An empty member list gives a ring where no
// partition has an owner.
func NewRing(cfg Config, members []string) (*Ring, error) {
	return newRing(cfg, members, defaultPlacer)
}

func newRing(cfg Config, members []string, place placer) (*Ring, error) {
	ids, err := checked(cfg, members)
	if err != nil {
		return nil, err
	}
	r := &Ring{cfg: cfg, members: ids, owners: make([]string, cfg.Partitions)}
	if len(ids) == 0 {
		return r, nil
	}
	for p, m := range place(ids, cfg, r.MaxLoad()) {
		r.owners[p] = ids[m]
	}
	return r, nil
}

// checked validates cfg and returns members sorted, without duplicates
// (workers list them in their own order, sometimes twice), refusing an
// empty id.
func checked(cfg Config, members []string) ([]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sharding: %w", err)
	}
	ids := slices.Clone(members)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > 0 && ids[0] == "" {
		return nil, errors.New("sharding: empty member id")
	}
	return ids, nil
}

// Config returns the settings the ring was built with.
func (r *Ring) Config() Config { return r.cfg }

// Partitions is P.
func (r *Ring) Partitions() int { return r.cfg.Partitions }

// Members returns the sorted member ids.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// OwnerOf returns the member that should own partition p, or "" when the
// ring has no members or p is out of range.
func (r *Ring) OwnerOf(p int) string {
	if p < 0 || p >= len(r.owners) {
		return ""
	}
	return r.owners[p]
}

// OwnerOfKey returns the partition of key and the member that should own it.
func (r *Ring) OwnerOfKey(key string) (partition int, owner string) {
	p := PartitionOf(key, r.cfg.Partitions)
	return p, r.owners[p]
}

// PartitionsOf returns, in ascending order, the partitions id should own.
func (r *Ring) PartitionsOf(id string) []int {
	var ps []int
	for p, o := range r.owners {
		if o == id {
			ps = append(ps, p)
		}
	}
	return ps
}

// Loads returns how many partitions each member owns.
func (r *Ring) Loads() map[string]int {
	loads := make(map[string]int, len(r.members))
	for _, id := range r.members {
		loads[id] = 0
	}
	for _, o := range r.owners {
		if o != "" {
			loads[o]++
		}
	}
	return loads
}

// MaxLoad is the bound no member exceeds: ⌈Load × P / M⌉ (never below
// ⌈P / M⌉, whatever the float rounding, so every partition has room).
func (r *Ring) MaxLoad() int {
	m := len(r.members)
	if m == 0 {
		return 0
	}
	return max(int(math.Ceil(r.cfg.Load*float64(r.cfg.Partitions)/float64(m))), (r.cfg.Partitions+m-1)/m)
}

// Move is a partition changing owner. From or To is "" when the partition
// had or gets no owner.
type Move struct {
	Partition int
	From, To  string
}

// Moves lists the partitions whose owner differs between old and new. A nil
// old ring counts as one with no owners.
func Moves(old, new *Ring) []Move {
	var moves []Move
	for p := range new.owners {
		from := ""
		if old != nil {
			from = old.OwnerOf(p)
		}
		if to := new.owners[p]; from != to {
			moves = append(moves, Move{Partition: p, From: from, To: to})
		}
	}
	return moves
}
