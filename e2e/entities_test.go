package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/testenv"
)

// sessionsPlugin builds the sessions example plugin (a state TTL and a
// broadcast handler) next to the other binaries.
func sessionsPlugin(t *testing.T, c *cluster) string {
	t.Helper()
	path := filepath.Join(c.bins, "sessions-plugin")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", path, "./examples/sessions")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build sessions plugin: %v\n%s", err, out)
	}
	return path
}

func donation(id, donor string, cents int) *workerpb.Job {
	return &workerpb.Job{Id: id, Handler: "donor.donate", Key: donor,
		Payload: []byte(fmt.Sprintf(`{"amount_cents":%d,"campaign":"c%d"}`, cents, len(donor)%4))}
}

// TestEntitiesListWhileCommitting: entities list over 100,000 donors
// prints each exactly once, across pages, while donations keep committing
// to those donors and to new ones.
func TestEntitiesListWhileCommitting(t *testing.T) {
	const donors = 100_000
	c := newCluster(t)
	c.start("w1")
	c.start("w2")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	for i := 0; i < donors; i += 5000 {
		jobs := make([]*workerpb.Job, 0, 5000)
		for j := i; j < i+5000; j++ {
			jobs = append(jobs, donation(fmt.Sprintf("seed-%d", j), fmt.Sprintf("d-%06d", j), 100))
		}
		submitWithRetry(ctx, t, cl, jobs)
	}
	testenv.Eventually(t, 5*time.Minute, func() error {
		n, err := countDonors(ctx, c)
		if err != nil || n < donors {
			return fmt.Errorf("%d donors listed so far (%v)", n, err)
		}
		return nil
	})
	t.Logf("%d donors submitted and committed in %v", donors, time.Since(start).Round(time.Millisecond))
	quiet := time.Now()
	if n, err := countDonors(ctx, c); err != nil || n != donors {
		t.Fatalf("a quiet listing found %d donors (%v)", n, err)
	}
	t.Logf("a quiet listing of %d donors through the Go client, pages of 10,000: %v", donors, time.Since(quiet).Round(time.Millisecond))
	quiet = time.Now()
	if out, err := c.coordinator("entities", "list", "donor", "--limit", "0"); err != nil || len(strings.Fields(out)) != donors {
		t.Fatalf("a quiet entities list: %d keys, %v", len(strings.Fields(out)), err)
	}
	t.Logf("a quiet entities list donor --limit 0 (pages of 1,000): %v", time.Since(quiet).Round(time.Millisecond))

	// Donations keep coming, to listed donors and to new ones, during
	// the listing.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var more atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			jobs := make([]*workerpb.Job, 0, 200)
			for j := range 100 {
				jobs = append(jobs, donation(fmt.Sprintf("more-%d-%d", n, j), fmt.Sprintf("d-%06d", (n*100+j*997)%donors), 5),
					donation(fmt.Sprintf("new-%d-%d", n, j), fmt.Sprintf("n-%d-%d", n, j), 5))
			}
			if _, err := cl.Submit(ctx, jobs); err == nil {
				more.Add(int64(len(jobs)))
			}
		}
	}()
	listStart := time.Now()
	out, err := c.coordinator("entities", "list", "donor", "--limit", "0")
	took := time.Since(listStart)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	listed := 0
	for _, k := range strings.Fields(out) {
		seen[k]++
		listed++
	}
	var missing, twice []string
	for i := range donors {
		k := fmt.Sprintf("d-%06d", i)
		if seen[k] != 1 {
			if seen[k] == 0 {
				missing = append(missing, k)
			} else {
				twice = append(twice, k)
			}
		}
	}
	for k, n := range seen {
		if n > 1 && !strings.HasPrefix(k, "d-") {
			twice = append(twice, k)
		}
	}
	t.Logf("entities list donor --limit 0: %d keys (%d of them new) in %v while %d more donations were submitted",
		listed, listed-donors, took.Round(time.Millisecond), more.Load())
	if len(missing) > 0 || len(twice) > 0 {
		t.Fatalf("%d donors missing (%v), %d listed more than once (%v)", len(missing), head(missing), len(twice), head(twice))
	}
	out, err = c.coordinator("entities", "list", "donor", "--prefix", "d-0999", "--limit", "30")
	if err != nil {
		t.Fatal(err)
	}
	if ks := strings.Fields(out); len(ks) != 30 || !strings.HasPrefix(ks[0], "d-0999") {
		t.Fatalf("--prefix d-0999 --limit 30 printed %d keys: %v", len(ks), head(ks))
	}
}

// countDonors counts the donor keys a listing through the Go client finds.
func countDonors(ctx context.Context, c *cluster) (int, error) {
	cl := c.client()
	n, after := 0, ""
	for {
		resp, err := cl.ListEntities(ctx, "donor", "d-", 10000, after)
		if err != nil {
			return n, err
		}
		n += len(resp.Keys)
		if after = resp.Next; after == "" {
			return n, nil
		}
	}
}

func head(xs []string) []string { return xs[:min(len(xs), 5)] }

// TestEntityDeleteThenDonate: a delete is ordered with the key's jobs:
// donations submitted before it are gone with it, and a donation after
// it starts from no state.
func TestEntityDeleteThenDonate(t *testing.T) {
	c := newCluster(t, "--partitions", "8")
	c.start("w1")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Three donations, not waited for, then the delete: it commits after them.
	submitWithRetry(ctx, t, cl, []*workerpb.Job{donation("a1", "alice", 100), donation("a2", "alice", 200), donation("a3", "alice", 300)})
	out, err := c.coordinator("entities", "delete", "donor", "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entities delete donor alice: %s", strings.TrimSpace(out))
	if res, err := cl.Results(ctx, 0, "a1", "a2", "a3"); err != nil || len(res) != 3 {
		t.Fatalf("results: %v %v", res, err)
	} else {
		for _, r := range res {
			if r.State != workerpb.JobResult_DONE {
				t.Fatalf("donation %s is %v once the delete after it committed", r.Id, r.State)
			}
		}
	}
	if _, err := c.coordinator("state", "donor", "alice"); err == nil || !strings.Contains(err.Error(), "no state") {
		t.Fatalf("state after the delete: %v", err)
	}
	if out, _ := c.coordinator("entities", "list", "donor"); strings.Contains(out, "alice") {
		t.Fatalf("alice still listed after the delete: %q", out)
	}
	submitWithRetry(ctx, t, cl, []*workerpb.Job{donation("a4", "alice", 700)})
	if _, err := cl.Results(ctx, 10*time.Second, "a4"); err != nil {
		t.Fatal(err)
	}
	out, err = c.coordinator("state", "donor", "alice")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		TotalCents int64 `json:"total_cents"`
		Count      int64 `json:"count"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.TotalCents != 700 || st.Count != 1 {
		t.Fatalf("state after delete and one donation of 700: %s (%v), want total 700, count 1", out, err)
	}
	// Deleting a state in flight with its key's jobs keeps their order.
	jobs := []*workerpb.Job{donation("b1", "bob", 1), donation("b2", "bob", 2)}
	submitWithRetry(ctx, t, cl, jobs)
	if _, err := cl.DeleteEntity(ctx, "donor", "bob", "del-bob", 0); err != nil {
		t.Fatal(err)
	}
	submitWithRetry(ctx, t, cl, []*workerpb.Job{donation("b3", "bob", 4)})
	if _, err := cl.Results(ctx, 10*time.Second, "b3"); err != nil {
		t.Fatal(err)
	}
	if sts, err := cl.State(ctx, "donor", "bob"); err != nil || !strings.Contains(string(sts[0].State), `"total_cents":4,`) {
		t.Fatalf("bob after two donations, a delete and a donation of 4: %s %v", sts[0].GetState(), err)
	}
	// The same delete id again deletes nothing more.
	if r, err := cl.DeleteEntity(ctx, "donor", "bob", "del-bob", 0); err != nil || r.State != workerpb.JobResult_DONE {
		t.Fatalf("the same delete again: %v %v", r, err)
	}
	if sts, err := cl.State(ctx, "donor", "bob"); err != nil || !sts[0].Found {
		t.Fatalf("the same delete id sent again deleted bob's new state: %v %v", sts, err)
	}
	if _, err := c.coordinator("entities", "delete", "donr", "bob"); err == nil || !strings.Contains(err.Error(), "unknown entity") {
		t.Fatalf("a misspelled entity type: %v", err)
	}
}

// TestEntityTTLExpires: a state whose handler declares a TTL expires
// after that long without a job; one that keeps getting jobs lives on.
func TestEntityTTLExpires(t *testing.T) {
	c := newCluster(t, "--partitions", "8")
	c.launch("w1", workerRun{plugin: sessionsPlugin(t, c), env: []string{"CORRAL_SESSION_TTL=2s"}})
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	visit := func(id, s string) {
		submitWithRetry(ctx, t, cl, []*workerpb.Job{{Id: id, Handler: "session.visit", Key: s, Payload: []byte(`{"page":"/"}`)}})
		if r, err := cl.Results(ctx, 10*time.Second, id); err != nil || r[0].State != workerpb.JobResult_DONE {
			t.Fatalf("visit %s: %v %v", id, r, err)
		}
	}
	visit("v-idle", "idle")
	start := time.Now()
	for i := 0; time.Since(start) < 3500*time.Millisecond; i++ {
		visit(fmt.Sprint("v-busy-", i), "busy")
		time.Sleep(400 * time.Millisecond) // the pace of busy's visits, well inside its 2 s TTL
	}
	sts, err := cl.State(ctx, "session", "idle", "busy")
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Found || !sts[1].Found {
		t.Fatalf("after 3.5 s with a TTL of 2 s: idle found %v (want false), busy found %v (want true)", sts[0].Found, sts[1].Found)
	}
	out, err := c.coordinator("entities", "list", "session")
	if err != nil || strings.Fields(out)[0] != "busy" || len(strings.Fields(out)) != 1 {
		t.Fatalf("entities list session: %q %v, want busy only", out, err)
	}
}
