package worker

import (
	"fmt"
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// TestEmittedIDsAreNotUserIDs: no id a user may submit equals the id of an
// emitted job, and the derivation never gives two jobs one id.
func TestEmittedIDsAreNotUserIDs(t *testing.T) {
	t.Parallel()
	from := map[string]string{} // id → the parent and number it came from
	derive := func(parent string, n int) string {
		id := store.EmittedID(parent, n)
		by := fmt.Sprintf("job %d of %q", n, parent)
		if prev, ok := from[id]; ok && prev != by {
			t.Errorf("id %q derived twice: as %s and as %s", id, prev, by)
		}
		from[id] = by
		return id
	}
	for _, parent := range []string{"gift-1", "gift-1/0", "gift-1/01", "a/1", "a", "a/1/2", "a/12", "x:y.z_w"} {
		for n := range 12 {
			id := derive(parent, n)
			if validateID(id) == nil {
				t.Errorf("emitted id %q (job %d of %q) is a valid user id", id, n, parent)
			}
			if err := validateResultID(id); err != nil {
				t.Errorf("result of emitted job %q refused: %v", id, err)
			}
			for m := range 12 {
				if gid := derive(id, m); validateID(gid) == nil {
					t.Errorf("emitted id %q is a valid user id", gid)
				}
			}
		}
	}
	for _, bad := range []string{"", "a b", store.EmittedID("", 0), store.EmittedID("a b", 1)} {
		if validateResultID(bad) == nil {
			t.Errorf("result id %q accepted", bad)
		}
	}
}

// TestRepeatedIDRunsOnce: a batch holding one job id twice (the job
// delivered twice) runs and commits it once and acks both entries.
func TestRepeatedIDRunsOnce(t *testing.T) {
	t.Parallel()
	stream := []store.Job{
		{ID: "a", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "2-0"},
		{ID: "a", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "3-0"},
	}
	wk := planWork(nil, stream, store.Snapshot{})
	if got := len(wk.runnable()); got != 2 {
		t.Fatalf("runnable %d jobs, want 2", got)
	}
	out := map[string]*pluginpb.Outcome{
		"a": {JobId: "a", Status: pluginpb.Outcome_OK},
		"b": {JobId: "b", Status: pluginpb.Outcome_OK},
	}
	b, err := buildBatch(wk, out, retryPolicy{maxAttempts: func(store.Job) int { return 3 }}, plugins.EntityType)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Done) != 2 || len(b.Acked) != 3 {
		t.Fatalf("done %v acked %v, want [a b] and all three entries", b.Done, b.Acked)
	}
}
