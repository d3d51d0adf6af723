package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/testenv"
)

func TestSubmitThenState(t *testing.T) {
	c := newCluster(t)
	c.start("w1")

	out, err := c.coordinator("submit", "--handler", "donor.donate", "--key", "alice",
		"--payload", `{"amount_cents": 10000, "campaign": "water"}`, "--id", "d-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "d-1 ") {
		t.Fatalf("submit printed %q, want the job id first", out)
	}
	// The same id and content again is a duplicate, not a second donation.
	out, err = c.coordinator("submit", "--handler", "donor.donate", "--key", "alice",
		"--payload", `{"amount_cents": 10000, "campaign": "water"}`, "--id", "d-1")
	if err != nil || !strings.Contains(out, "duplicate") {
		t.Fatalf("resubmission: out %q err %v, want a duplicate", out, err)
	}
	// Bad input is refused with a reason and a non-zero exit.
	if _, err := c.coordinator("submit", "--handler", "donor.nope", "--key", "alice", "--payload", `{}`); err == nil || !strings.Contains(err.Error(), "unknown handler") {
		t.Fatalf("unknown handler: err %v", err)
	}
	if _, err := c.coordinator("submit", "--handler", "donor.donate", "--key", "alice", "--payload", `{not json`); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Fatalf("malformed payload: err %v", err)
	}

	var donor ledger.DonorState
	waitState(t, c, "donor", "alice", &donor, func() bool { return donor.Count == 1 })
	if want := (ledger.DonorState{TotalCents: 10000, Count: 1, ZakatCents: 250}); donor != want {
		t.Fatalf("donor alice = %+v, want %+v", donor, want)
	}
	var campaign ledger.CampaignState
	waitState(t, c, "campaign", "water", &campaign, func() bool { return campaign.Count == 1 })
	if campaign.TotalCents != 10000 {
		t.Fatalf("campaign water = %+v, want 10000 cents", campaign)
	}
}

func waitState(t *testing.T, c *cluster, entity, key string, v any, done func() bool) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := c.coordinator("state", entity, key)
		if err == nil {
			if err := json.Unmarshal([]byte(out), v); err != nil {
				t.Fatalf("state %s %s printed %q: %v", entity, key, out, err)
			}
			if done() {
				return nil
			}
		}
		return fmt.Errorf("state %s %s: out %q err %v", entity, key, strings.TrimSpace(out), err)
	})
}

// TestKillWorkerUnderLoad submits 2,000 donations to three workers and
// SIGKILLs one in the middle: every donor and campaign total must come out
// exact — nothing lost, nothing counted twice.
func TestKillWorkerUnderLoad(t *testing.T) {
	c := newCluster(t, "--audit")
	for _, id := range []string{"w1", "w2", "w3"} {
		c.start(id)
	}
	cl := c.client()
	jobs, exp := workload.Generate(workload.Spec{Seed: 42, Donations: 2000, Donors: 150, Campaigns: 12})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Once half the jobs are in, w2 is killed while the next batches go.
	half := make(chan int)
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		n := <-half
		t.Logf("SIGKILL w2 after %d submissions", n)
		c.signal("w2", syscall.SIGKILL)
	}()
	// Small batches, so the kill lands while jobs are in flight. A batch
	// whose call fails is sent again: ids make that safe.
	const batch = 20
	for i := 0; i < len(jobs); i += batch {
		part := jobs[i:min(i+batch, len(jobs))]
		submitWithRetry(ctx, t, cl, part)
		if n := i + len(part); n >= len(jobs)/2 && half != nil {
			half <- n
			half = nil
		}
	}
	<-killed

	rep, err := workload.WaitFor(ctx, cl, exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after SIGKILL: %s", rep)
	if !rep.OK() {
		t.Fatalf("totals wrong after a worker was killed: %s", rep)
	}
	checkAudit(t, c)
}

func submitWithRetry(ctx context.Context, t *testing.T, cl interface {
	Submit(context.Context, []*workerpb.Job) ([]*workerpb.SubmitResult, error)
}, jobs []*workerpb.Job) {
	t.Helper()
	for {
		res, err := cl.Submit(ctx, jobs)
		if err == nil {
			for _, r := range res {
				if r.Error != "" {
					t.Fatalf("job %s rejected: %s", r.Id, r.Error)
				}
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("submit: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // a pause before the batch goes again
	}
}

// checkAudit reads every partition's audit stream: within a partition,
// accepted epochs never decrease (commits of two owners never interleave),
// and no job id is committed twice.
func checkAudit(t *testing.T, c *cluster) {
	t.Helper()
	rdb := c.redis.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "corral:{p*}:audit").Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	commits := 0
	for _, k := range keys {
		msgs, err := rdb.XRange(ctx, k, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var lastEpoch int64
		for _, m := range msgs {
			var epoch int64
			if _, err := fmt.Sscan(fmt.Sprint(m.Values["e"]), &epoch); err != nil {
				t.Fatalf("%s: bad epoch %v", k, m.Values["e"])
			}
			if epoch < lastEpoch {
				t.Errorf("%s: epoch went back from %d to %d at %s", k, lastEpoch, epoch, m.ID)
			}
			lastEpoch = epoch
			id, _ := m.Values["id"].(string)
			if seen[id] {
				t.Errorf("job %s committed twice (second in %s)", id, k)
			}
			seen[id] = true
			commits++
		}
	}
	if commits != 4000 {
		t.Errorf("audit shows %d commits, want 4000 (2000 donations + 2000 credits)", commits)
	}
	t.Logf("audit: %d commits across %d partitions, epochs monotonic, no id twice", commits, len(keys))
}
