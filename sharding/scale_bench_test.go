package sharding

import (
	"fmt"
	"testing"
)

// BenchmarkMembershipChange is everything one worker recomputes when a
// member leaves: the new ring, the diff against the old one (for the log
// line and the moves counter) and its own partitions. It reports the
// partitions moved next to the time.
func BenchmarkMembershipChange(b *testing.B) {
	for _, tc := range []struct{ partitions, members int }{{64, 3}, {1024, 10}, {4096, 10}, {4096, 100}} {
		b.Run(fmt.Sprintf("P%d_M%d", tc.partitions, tc.members), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Partitions = tc.partitions
			members := ids(tc.members)
			old, err := NewRing(cfg, members)
			if err != nil {
				b.Fatal(err)
			}
			var moved int
			for b.Loop() {
				ring, err := NewRing(cfg, members[1:])
				if err != nil {
					b.Fatal(err)
				}
				moved = len(Moves(old, ring))
				_ = ring.PartitionsOf(members[len(members)-1])
			}
			b.ReportMetric(float64(moved), "moved")
		})
	}
}
