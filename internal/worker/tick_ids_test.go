package worker

import (
	"testing"
	"time"

	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/store"
)

// TestTickIDsAreNoOtherJobsIDs: a tick's job id is no id a user may
// submit, and no emitted job's: taking the numbers off it leaves "s~NAME",
// which is neither a user id nor an emitted one. Its result, and those of
// the jobs it emits, may be asked for.
func TestTickIDsAreNoOtherJobsIDs(t *testing.T) {
	t.Parallel()
	tick := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, name := range []string{"nightly", "a", "a1", "x:y/z.w-v_u"} {
		id := schedule.TickID(name, tick)
		if validateID(id) == nil {
			t.Errorf("tick id %q is a valid user id", id)
		}
		base, _, ok := store.ParentID(id)
		if !ok || base != "s~"+name {
			t.Fatalf("tick id %q splits into %q, %v", id, base, ok)
		}
		if _, _, ok := store.ParentID(base); ok {
			t.Errorf("%q, what a tick id is derived from, splits as an emitted job's id", base)
		}
		if validateID(base) == nil {
			t.Errorf("%q is a valid user id", base)
		}
		for _, rid := range []string{id, store.EmittedID(id, 0), store.EmittedID(store.EmittedID(id, 3), 1)} {
			if err := validateResultID(rid); err != nil {
				t.Errorf("result of %q refused: %v", rid, err)
			}
		}
	}
	for _, bad := range []string{"s~", "s~1a", "s~a b~1", "s~~1"} {
		if validateResultID(bad) == nil {
			t.Errorf("result id %q accepted", bad)
		}
	}
}
