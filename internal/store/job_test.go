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

// TestPackedTrace: a traced job's traceparent survives the stream entry,
// the bodies hash and the outbox; an untraced job packs to the same bytes
// as before tracing existed (86 bytes for this donation), so tracing off
// costs no storage.
func TestPackedTrace(t *testing.T) {
	j := Job{ID: "don-1", Handler: "donor.donate", Key: "donor-7", Payload: []byte(`{"amount_cents":1234,"campaign":"campaign-007"}`),
		Attempt: 1, SubmittedAt: 1_700_000_000_123}
	if n := len(packJob(&j)); n != 86 {
		t.Fatalf("untraced job packs to %d bytes, want 86", n)
	}
	if n := len(j.encode()); n != 142 {
		t.Fatalf("untraced job body is %d bytes, want 142", n)
	}
	j.Trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var got Job
	if err := unpackJob(packJob(&j), &got); err != nil || got.Trace != j.Trace {
		t.Fatalf("packed trace read back as %q, %v", got.Trace, err)
	}
	var emitted []Job
	if err := eachPacked(packEmits([]Job{j, {ID: "x~0", Handler: "h.a", Key: "k"}}), func(_ []byte, e Job) { emitted = append(emitted, e) }); err != nil {
		t.Fatal(err)
	}
	if len(emitted) != 2 || emitted[0].Trace != j.Trace || emitted[1].Trace != "" {
		t.Fatalf("outbox round trip: %+v", emitted)
	}
	if b, err := decodeJob(0, j.encode()); err != nil || b.Trace != j.Trace {
		t.Fatalf("body trace read back as %q, %v", b.Trace, err)
	}
	if err := unpackJob(append(packJob(&Job{ID: "a"}), 'x'), &Job{}); err == nil {
		t.Fatal("packed job with an unknown trailer accepted")
	}
}
