package store

import "testing"

// The enqueue path hashes from a reused buffer; the dedup of a job already
// stored depends on it matching ContentHash exactly.
func TestContentHashMatches(t *testing.T) {
	var buf []byte
	for _, j := range []Job{
		{Handler: "donor.donate", Key: "alice", Payload: []byte(`{"amount_cents":1}`)},
		{Handler: "", Key: "", Payload: nil},
		{Handler: "a", Key: "b\x00c", Payload: []byte("\xff")},
	} {
		var got string
		got, buf = contentHash(&j, buf)
		if want := j.ContentHash(); got != want {
			t.Errorf("contentHash(%+v) = %s, ContentHash = %s", j, got, want)
		}
	}
}
