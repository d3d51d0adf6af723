package worker

import (
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// TestDeleteCutsItsKeysRun: a delete of a key's state runs no plugin; the
// key's jobs before it commit with it, the delete replaces their state
// write, and the jobs after it wait for the next batch, which loads no
// state. Other keys run as usual, and a TTL'd handler's job that saves
// nothing still renews its state's TTL.
func TestDeleteCutsItsKeysRun(t *testing.T) {
	t.Parallel()
	stream := []store.Job{
		{ID: "a1", Handler: "donor.donate", Key: "a", Attempt: 1, StreamID: "1-0"},
		{ID: "del", Handler: store.DeleteHandler, Key: "a", Payload: []byte("donor"), Attempt: 1, StreamID: "2-0"},
		{ID: "a2", Handler: "donor.donate", Key: "a", Attempt: 1, StreamID: "3-0"},
		{ID: "a3", Handler: "donor.donate", Key: "a", Attempt: 1, StreamID: "4-0"},
		{ID: "s1", Handler: "session.visit", Key: "s", Attempt: 1, StreamID: "5-0"},
	}
	wk := planWork(nil, stream, store.Snapshot{})
	hs := map[string]host.HandlerInfo{"donor.donate": {}, "session.visit": {StateTTL: time.Minute}}
	run, outcomes := unserved(wk, hs)
	if len(run) != 2 || run[0].ID != "a1" || run[1].ID != "s1" {
		t.Fatalf("jobs sent to the plugin: %v, want a1 and s1", run)
	}
	outcomes["a1"] = &pluginpb.Outcome{JobId: "a1", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte("1")}
	outcomes["s1"] = &pluginpb.Outcome{JobId: "s1", Status: pluginpb.Outcome_OK}
	rp := retryPolicy{maxAttempts: func(store.Job) int { return 3 }, base: time.Second, max: time.Minute, now: time.UnixMilli(1000),
		stateTTL: func(h string) time.Duration { return hs[h].StateTTL }}
	b, err := buildBatch(wk, outcomes, rp, plugins.EntityType)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Done) != 3 || b.Done[0] != "a1" || b.Done[1] != "del" {
		t.Errorf("done %v, want a1, del and s1", b.Done)
	}
	want := []store.StateWrite{
		{Entity: store.EntityRef{Type: "donor", Key: "a"}, Delete: true},
		{Entity: store.EntityRef{Type: "session", Key: "s"}, Touch: true, TTL: time.Minute},
	}
	if len(b.States) != 2 || b.States[0].Entity != want[0].Entity || !b.States[0].Delete ||
		b.States[1].Entity != want[1].Entity || !b.States[1].Touch || b.States[1].TTL != time.Minute {
		t.Errorf("state writes %+v, want %+v", b.States, want)
	}
	if len(b.Keys) != 1 || b.Keys[0].Park == nil || b.Keys[0].Park.ID != "a2" || len(b.Keys[0].Front) != 1 || b.Keys[0].Front[0].ID != "a3" {
		t.Errorf("key plans %+v: want a2 parked as due with a3 behind it", b.Keys)
	}
}
