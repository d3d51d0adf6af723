package store

import (
	"reflect"
	"testing"
)

// TestStreamEntryRoundTrip: a job read back from its stream entry is the
// job written; an entry that holds no packed job, or a broken one, comes
// back without a handler, to be dead-lettered.
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
	for _, v := range []map[string]any{
		{"id": "j-1", "h": "donor.donate", "k": "donor-7", "p": "{}"},
		{"j": string([]byte{packedJobV1, 200})},
	} {
		if o := jobFromStream(1, "6-0", v); o.Handler != "" || o.ID != "bad-entry-6-0" || len(o.Errors) != 1 {
			t.Fatalf("entry %q read as %+v, want a job without a handler", v, o)
		}
	}
	if err := unpackJob([]byte{packedJobV1, 200}, &Job{}); err == nil {
		t.Fatal("truncated packed job accepted")
	}
}
