package store

import (
	"reflect"
	"testing"
)

// TestStreamEntryRoundTrip: a job read back from its stream entry is the
// job written, in the packed form and in the per-field form of earlier
// versions.
func TestStreamEntryRoundTrip(t *testing.T) {
	in := Job{ID: "j-1", Handler: "donor.donate", Key: "donor-7", Payload: []byte("{\"amount_cents\":5}\x00\xff"),
		Attempt: 3, SubmittedAt: 1_700_000_000_123, MaxAttempts: 9, TimeoutMs: 2500, Errors: []string{"attempt 1: a", "attempt 2: b"}}
	f := in.streamFields()
	v := map[string]any{f[0].(string): string(f[1].([]byte))}
	got := jobFromStream(4, "5-1", v)
	want := in
	want.Partition, want.StreamID = 4, "5-1"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("packed round trip:\n got %+v\nwant %+v", got, want)
	}
	old := map[string]any{"id": "j-1", "h": "donor.donate", "k": "donor-7", "p": "{}", "t": "12", "a": "2", "e": `["x"]`}
	o := jobFromStream(1, "6-0", old)
	if o.ID != "j-1" || o.Handler != "donor.donate" || o.Attempt != 2 || o.SubmittedAt != 12 || len(o.Errors) != 1 {
		t.Fatalf("per-field entry read as %+v", o)
	}
	if err := unpackJob([]byte{packedJobV1, 200}, &Job{}); err == nil {
		t.Fatal("truncated packed job accepted")
	}
}
