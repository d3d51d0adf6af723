package sharding

import (
	"fmt"
	"testing"
)

// BenchmarkMembershipChange is everything one worker recomputes when a
// member leaves: the new placement, the diff against the old one (for the
// log line and the moves counter) and its own partitions. It reports the
// partitions moved next to the time, for the production placement
// ("settle": the layout settled from the one before; the worker that
// stores it computes it, the others read it) and, in the same run, for the
// ring ("consistent") and the placements it was compared with: plain rendezvous hashing, rendezvous hashing on ranks
// (rankplace_test.go) and ranks whose overflow follows the ring
// (variants_test.go).
func BenchmarkMembershipChange(b *testing.B) {
	for _, tc := range []struct{ partitions, members int }{{64, 3}, {1024, 10}, {4096, 10}, {4096, 100}} {
		b.Run(fmt.Sprintf("settle/P%d_M%d", tc.partitions, tc.members), func(b *testing.B) {
			benchSettle(b, tc.partitions, tc.members)
		})
		for _, pl := range []struct {
			name  string
			place placer
		}{{"consistent", defaultPlacer}, {"rendezvous", place}, {"rank-rendezvous", rankPlace}, {"rank-ringspill20", rankRingSpill{replicas: 20}.place}, {"rank-ringspill100", rankRingSpill{replicas: 100}.place}} {
			b.Run(fmt.Sprintf("%s/P%d_M%d", pl.name, tc.partitions, tc.members), func(b *testing.B) {
				benchChange(b, pl.place, tc.partitions, tc.members)
			})
		}
	}
}

func benchChange(b *testing.B, place placer, partitions, n int) {
	cfg := DefaultConfig()
	cfg.Partitions = partitions
	members := ids(n)
	old, err := newRing(cfg, members, place)
	if err != nil {
		b.Fatal(err)
	}
	var moved int
	for b.Loop() {
		ring, err := newRing(cfg, members[1:], place)
		if err != nil {
			b.Fatal(err)
		}
		moved = len(Moves(old, ring))
		_ = ring.PartitionsOf(members[len(members)-1])
	}
	b.ReportMetric(float64(moved), "moved")
}

func benchSettle(b *testing.B, partitions, n int) {
	cfg := DefaultConfig()
	cfg.Partitions = partitions
	members := ids(n)
	old := settled(b, nil, partitions, members)
	var moved int
	for b.Loop() {
		owners, err := Settle(cfg, members[1:], old.owners)
		if err != nil {
			b.Fatal(err)
		}
		ring, err := Placed(cfg, members[1:], owners)
		if err != nil {
			b.Fatal(err)
		}
		moved = len(Moves(old, ring))
		_ = ring.PartitionsOf(members[len(members)-1])
	}
	b.ReportMetric(float64(moved), "moved")
}
