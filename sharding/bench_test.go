package sharding

import (
	"fmt"
	"testing"
)

func BenchmarkPartitionOf(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("donor-%d", i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		PartitionOf(keys[i%len(keys)], DefaultPartitions)
	}
}

// BenchmarkNewRing is the cost of a membership change on one worker.
func BenchmarkNewRing(b *testing.B) {
	for _, tc := range []struct{ partitions, members int }{{64, 3}, {4096, 100}} {
		b.Run(fmt.Sprintf("P%d_M%d", tc.partitions, tc.members), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Partitions = tc.partitions
			members := ids(tc.members)
			for b.Loop() {
				if _, err := NewRing(cfg, members); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
