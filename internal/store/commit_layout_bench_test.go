package store

import (
	"strconv"
	"testing"

	"github.com/corralhq/corral/internal/lease"
)

// BenchmarkCommitLayout: the worker's side of a commit, its KEYS and ARGV
// laid out, for a 256-job batch shaped like the donations bench's (each
// job done with a result, a state the batch loaded and one emitted job).
func BenchmarkCommitLayout(b *testing.B) {
	s := New(nil, DefaultConfig())
	const n = 256
	batch := &Batch{Attempts: map[string]int{}}
	for i := range n {
		j := Job{ID: "d" + strconv.Itoa(i), Handler: "donor.donate", Key: "donor-" + strconv.Itoa(i), Payload: []byte(`{"amount_cents":1234,"campaign":"c7"}`),
			Attempt: 1, SubmittedAt: 1_700_000_000_000, StreamID: "1700000000000-" + strconv.Itoa(i)}
		batch.Jobs = append(batch.Jobs, j)
		batch.Done = append(batch.Done, j.ID)
		batch.Attempts[j.ID] = 1
		batch.Acked = append(batch.Acked, j.StreamID)
		batch.Results = append(batch.Results, Result{JobID: j.ID, Value: []byte(`{"total_cents":123456,"donations":12}`)})
		batch.States = append(batch.States, StateWrite{Entity: EntityRef{Type: "donor", Key: j.Key}, Value: []byte(`{"total_cents":123456,"donations":12}`), Existed: true})
		batch.Emits = append(batch.Emits, Job{ID: EmittedID(j.ID, 0), Handler: "campaign.credit", Key: "c7", Payload: []byte(`{"amount_cents":1234}`)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.commitLayout(1, lease.Grant{Epoch: 1, Nonce: "n"}, 0, batch, 1_700_000_000_000); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/job")
}
