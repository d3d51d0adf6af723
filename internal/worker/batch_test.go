package worker

import (
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/pluginpb"
)

func TestEntityOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"donor.donate": "donor", "campaign.credit": "campaign", "plain": "plain", "a.b.c": "a"} {
		if got := EntityOf(in); got != want {
			t.Errorf("EntityOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuildBatch(t *testing.T) {
	t.Parallel()
	jobs := []store.Job{
		{ID: "a", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "1-0"},
		{ID: "b", Handler: "donor.donate", Key: "k", Attempt: 1, StreamID: "2-0"},
		{ID: "c", Handler: "donor.donate", Key: "k", Attempt: 3, StreamID: "3-0"},
		{ID: "d", Handler: "donor.donate", Key: "x", Attempt: 1, StreamID: "4-0"},
		{ID: "e", Handler: "donor.donate", Key: "x", Attempt: 1, StreamID: "5-0"},
		{ID: "old", Handler: "donor.donate", Key: "x", Attempt: 1, StreamID: "6-0"},
	}
	snap := store.Snapshot{Finished: map[string]bool{"old": true}}
	req := buildRequest(jobs, snap)
	if len(req.Jobs) != 5 || len(req.Entities) != 2 {
		t.Fatalf("request has %d jobs, %d entities; want 5 and 2 (finished job left out)", len(req.Jobs), len(req.Entities))
	}
	resp := &pluginpb.HandleResponse{Outcomes: []*pluginpb.Outcome{
		{JobId: "a", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte("1"), Emits: []*pluginpb.Emit{{Handler: "campaign.credit", Key: "c1"}}},
		{JobId: "b", Status: pluginpb.Outcome_OK, StateChanged: true, State: []byte("2"), Result: []byte(`{"ok":true}`)},
		{JobId: "c", Status: pluginpb.Outcome_RETRY, Error: "boom"},
		{JobId: "d", Status: pluginpb.Outcome_RETRY, Error: "later"},
		{JobId: "e", Status: pluginpb.Outcome_FAIL, Error: "bad"},
	}}
	b, err := buildBatch(jobs, snap, resp, func(string) int { return 3 })
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Acked) != 6 {
		t.Errorf("acked %d stream entries, want all 6", len(b.Acked))
	}
	if len(b.Done) != 2 || b.Done[0] != "a" || b.Done[1] != "b" {
		t.Errorf("done %v", b.Done)
	}
	if len(b.States) != 1 || string(b.States[0].Value) != "2" {
		t.Errorf("states %+v: want one write with the last state", b.States)
	}
	if len(b.Emits) != 1 || b.Emits[0].ID != "a/0" {
		t.Errorf("emits %+v: want one with the derived id a/0", b.Emits)
	}
	if len(b.Results) != 1 || b.Results[0].JobID != "b" {
		t.Errorf("results %+v", b.Results)
	}
	if len(b.Retries) != 1 || b.Retries[0].ID != "d" || b.Retries[0].Attempt != 2 {
		t.Errorf("retries %+v: want d at attempt 2", b.Retries)
	}
	if len(b.Dead) != 2 || b.Dead[0].Job.ID != "c" || b.Dead[1].Job.ID != "e" {
		t.Errorf("dead %+v: want c (out of attempts) and e (failed)", b.Dead)
	}
	if _, err := buildBatch(jobs, snap, &pluginpb.HandleResponse{}, func(string) int { return 3 }); err == nil {
		t.Error("missing outcomes accepted")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := validateID("don-1/0:x_y.z"); err != nil {
		t.Error(err)
	}
	if err := validateID("bad id"); err == nil {
		t.Error("id with a space accepted")
	}
	if err := validateKey(""); err == nil {
		t.Error("empty key accepted")
	}
	if err := validatePayload([]byte(`{"a":1}`), 10); err != nil {
		t.Error(err)
	}
	if err := validatePayload([]byte(`{"a":1}`), 3); err == nil {
		t.Error("oversized payload accepted")
	}
	if err := validatePayload([]byte(`{`), 10); err == nil {
		t.Error("malformed payload accepted")
	}
	if err := DefaultConfig().Validate(); err == nil {
		t.Error("config without id accepted")
	}
	cfg := DefaultConfig()
	cfg.ID = "w"
	if err := cfg.Validate(); err != nil {
		t.Errorf("default config with an id: %v", err)
	}
}
