package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// FuzzValidateJob: submit validation never panics, and what it accepts is
// safe to write: a valid id and key, a JSON payload within the limit that
// has the declared shape.
func FuzzValidateJob(f *testing.F) {
	f.Add("gift-1", "alice", []byte(`{"amount_cents":100,"campaign":"water"}`), `{"amount_cents":"integer","campaign":"string"}`)
	f.Add("", "", []byte(``), ``)
	f.Add("bad id", "k", []byte(`{"amount_cents":1.5}`), `{"amount_cents":"integer"}`)
	f.Add("big-1", "k", []byte(`{"amount_cents":99999999999999999999}`), `{"amount_cents":"integer"}`)
	f.Add("exp-1", "k", []byte(`{"amount_cents":1e3}`), `{"amount_cents":"integer"}`)
	f.Add("a/b:c", "\xff", []byte(`[1,2]`), `{"x":"array"}`)
	f.Fuzz(func(t *testing.T, id, key string, payload []byte, shape string) {
		const limit = 4096
		err := validateID(id)
		if err == nil {
			err = validateKey(key)
		}
		if err == nil {
			err = validatePayload(payload, limit)
		}
		if err == nil {
			err = validateShape(payload, shapeDecl{required: shape})
		}
		if err != nil {
			return
		}
		if len(payload) > limit || !json.Valid(payload) || key == "" || len(id) > MaxIDBytes {
			t.Fatalf("accepted a bad job: id %q key %q payload %q", id, key, payload)
		}
		// Each declared field decodes into the Go type its JSON type
		// stands for, as a handler's typed decoder would.
		var want map[string]string
		var got map[string]json.RawMessage
		if json.Unmarshal([]byte(shape), &want) == nil && len(want) > 0 {
			if err := json.Unmarshal(payload, &got); err != nil {
				t.Fatalf("accepted payload %q is not an object for shape %s: %v", payload, shape, err)
			}
			for f, typ := range want {
				if !decodesAs(got[f], typ) {
					t.Fatalf("accepted payload %q, but field %q does not decode as %s", payload, f, typ)
				}
			}
		}
	})
}

// FuzzBuildBatch: whatever statuses a plugin reply carries, a batch keeps
// per-key order (nothing after a parked job commits), acks every entry and
// finishes each job at most once; a rejection is never dead-lettered.
func FuzzBuildBatch(f *testing.F) {
	f.Add([]byte{1, 1, 2, 1, 3, 1}, uint8(3))
	f.Add([]byte{2, 2, 2, 2}, uint8(1))
	f.Add([]byte{0, 9, 3, 1}, uint8(2))
	f.Add([]byte{4, 1, 4, 2, 4}, uint8(1))
	f.Fuzz(func(t *testing.T, statuses []byte, maxAtt uint8) {
		if len(statuses) == 0 || len(statuses) > 64 {
			return
		}
		var stream []store.Job
		out := map[string]*pluginpb.Outcome{}
		for i, s := range statuses {
			id := "j" + string(rune('a'+i%26)) + string(rune('0'+i/26))
			stream = append(stream, store.Job{ID: id, Handler: "donor.donate", Key: string(rune('k' + int(s)%3)), Attempt: 1 + int(s)%4, StreamID: id})
			out[id] = &pluginpb.Outcome{JobId: id, Status: pluginpb.Outcome_Status(s % 5), Error: "e"}
		}
		wk := planWork(nil, stream, store.Snapshot{Finished: map[string]bool{}, Held: map[string]bool{}})
		rp := retryPolicy{maxAttempts: func(store.Job) int { return int(maxAtt%5) + 1 }, base: time.Millisecond, max: time.Second, now: time.Unix(0, 0)}
		b, err := buildBatch(wk, out, rp, plugins.EntityType)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Acked) != len(stream) {
			t.Fatalf("acked %d of %d", len(b.Acked), len(stream))
		}
		finished := map[string]bool{}
		for _, id := range b.Done {
			finished[id] = true
		}
		for _, d := range b.Dead {
			if finished[d.Job.ID] {
				t.Fatalf("%s both done and dead", d.Job.ID)
			}
			finished[d.Job.ID] = true
		}
		for _, r := range b.Rejected {
			if finished[r.JobID] {
				t.Fatalf("%s rejected and done or dead", r.JobID)
			}
			if out[r.JobID].Status != pluginpb.Outcome_REJECTED {
				t.Fatalf("%s rejected on outcome %v", r.JobID, out[r.JobID].Status)
			}
			finished[r.JobID] = true
		}
		for _, d := range b.Dead {
			if out[d.Job.ID].Status == pluginpb.Outcome_REJECTED {
				t.Fatalf("%s dead-lettered on a rejection", d.Job.ID)
			}
		}
		parkedKey := map[string]bool{}
		for _, kp := range b.Keys {
			if kp.Park != nil {
				parkedKey[kp.Key] = true
				if finished[kp.Park.ID] {
					t.Fatalf("%s finished and parked", kp.Park.ID)
				}
				for _, j := range kp.Front {
					if finished[j.ID] {
						t.Fatalf("%s waits and finished", j.ID)
					}
				}
			}
		}
		// Per key: finished jobs form a prefix of the key's jobs.
		stopped := map[string]bool{}
		for _, j := range stream {
			if !finished[j.ID] {
				stopped[j.Key] = true
			} else if stopped[j.Key] {
				t.Fatalf("job %s of key %s finished after an earlier job of its key did not", j.ID, j.Key)
			}
		}
		for k := range stopped {
			if !parkedKey[k] {
				t.Fatalf("key %s has unfinished jobs but no parked job", k)
			}
		}
	})
}
