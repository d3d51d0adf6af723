package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/ledger"
)

// TestCallKeepsOrderWithQueuedJobs submits a few donations of a key and at
// once calls another on it, round after round: a call may run straight on
// its owner only when nothing of its key is queued, so every reply must
// show the state after all the donations submitted before it. Rounds with
// nothing submitted first let calls take the direct path.
func TestCallKeepsOrderWithQueuedJobs(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	c.start("w2")
	cl := c.client()
	waitOwners(t, cl, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	want := map[string]ledger.DonorState{}
	var lat []time.Duration
	for round := range 60 {
		key := fmt.Sprintf("mixed-%d", round%5)
		var jobs []*workerpb.Job
		for i := range round % 4 {
			d := ledger.Donation{AmountCents: int64(round*10 + i + 1), Campaign: "mixed"}
			want[key] = want[key].Apply(d)
			jobs = append(jobs, donationJob(fmt.Sprintf("mixed-%d-%d", round, i), key, d))
		}
		if len(jobs) > 0 {
			res, err := cl.Submit(ctx, jobs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Error != "" || r.Duplicate {
					t.Fatalf("submit %s: %+v", r.Id, r)
				}
			}
		}
		d := ledger.Donation{AmountCents: int64(1000 + round), Campaign: "mixed"}
		want[key] = want[key].Apply(d)
		resp := callUntilDone(t, cl, &lat, donationJob(fmt.Sprintf("mixed-call-%d", round), key, d), 5*time.Second)
		var got ledger.DonorState
		if err := json.Unmarshal(resp.Result.Result, &got); err != nil {
			t.Fatalf("round %d: result %q: %v", round, resp.Result.Result, err)
		}
		if got != want[key] {
			t.Fatalf("round %d: the call on %s replied %+v, want %+v: it ran before a donation submitted ahead of it, or without one", round, key, got, want[key])
		}
	}
	states, err := cl.State(ctx, "donor", "mixed-0", "mixed-1", "mixed-2", "mixed-3", "mixed-4")
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		var got ledger.DonorState
		if err := json.Unmarshal(st.State, &got); err != nil {
			t.Fatal(err)
		}
		if key := fmt.Sprintf("mixed-%d", i); got != want[key] {
			t.Fatalf("%s ends at %+v, want %+v", key, got, want[key])
		}
	}
}
