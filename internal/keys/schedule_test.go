package keys

import (
	"strconv"
	"testing"
)

// The schedule keys of a partition carry its hash tag and are none of its
// other keys.
func TestScheduleKeysShareThePartitionsSlot(t *testing.T) {
	t.Parallel()
	for _, p := range []int{0, 7, 255} {
		others := map[string]string{}
		for role, key := range partitionKeys(p) {
			others[key] = role
		}
		k := For(p)
		for role, key := range map[string]string{"schedules": k.Schedules(), "schedule ticks": k.ScheduleTicks()} {
			if tag := hashTag(key); tag != "p"+strconv.Itoa(p) {
				t.Errorf("partition %d %s key %q has hash tag %q", p, role, key, tag)
			}
			if other, dup := others[key]; dup {
				t.Errorf("partition %d: %s and %s share key %q", p, role, other, key)
			}
			others[key] = role
		}
	}
}
