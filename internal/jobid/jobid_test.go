package jobid

import (
	"regexp"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^[0-9a-z]+-[0-9a-f]{16}$`)
	t0 := time.Unix(1_700_000_000, 0)
	a, b, later := New(t0), New(t0), New(t0.Add(time.Microsecond))
	for _, id := range []string{a, b, later} {
		if !shape.MatchString(id) {
			t.Errorf("id %q does not have the form time-random", id)
		}
	}
	if a == b {
		t.Errorf("two ids made at one time are equal: %q", a)
	}
	if !(a < later && b < later) {
		t.Errorf("ids do not sort by time: %q, %q before %q", a, b, later)
	}
}
