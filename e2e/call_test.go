package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// TestCallRoutesToOwner calls donations synchronously: each reply is the
// donor's state right after that donation, so replies also show per-key
// order.
func TestCallRoutesToOwner(t *testing.T) {
	c := newCluster(t)
	for _, id := range []string{"w1", "w2", "w3"} {
		c.start(id)
	}
	cl := c.client()
	waitOwners(t, cl, 3)

	const keys, calls = 20, 200
	want := map[string]ledger.DonorState{}
	var lat []time.Duration
	direct := 0
	for i := range calls {
		key := fmt.Sprintf("caller-%02d", i%keys)
		d := ledger.Donation{AmountCents: int64(100 + i), Campaign: "calls"}
		resp := callUntilDone(t, cl, &lat, donationJob(fmt.Sprintf("call-%d", i), key, d), 5*time.Second)
		var got ledger.DonorState
		if err := json.Unmarshal(resp.Result.Result, &got); err != nil {
			t.Fatalf("call %d: result %q is not a donor state: %v", i, resp.Result.Result, err)
		}
		exp := want[key].Apply(d)
		want[key] = exp
		if got != exp {
			t.Fatalf("call %d on %s replied %+v, want %+v (a reply must show the state right after its own job)", i, key, got, exp)
		}
		if !resp.Durable {
			direct++
		}
	}
	if direct == 0 {
		t.Fatalf("none of %d calls was served directly by the owner", calls)
	}

	// donor.report reads the campaign, which lives in another partition,
	// through the host's query service; credits arrive through the outbox,
	// so wait until they are all in.
	var campaign ledger.CampaignState
	for _, d := range want {
		campaign.TotalCents += d.TotalCents
		campaign.Count += d.Count
	}
	key := "caller-07"
	n := 0
	testenv.Eventually(t, 30*time.Second, func() error {
		n++
		q, _ := json.Marshal(ledger.ReportQuery{Campaign: "calls"})
		resp := callUntilDone(t, cl, &[]time.Duration{}, &workerpb.Job{Id: fmt.Sprintf("report-%d", n), Handler: ledger.HandlerReport, Key: key, Payload: q}, 5*time.Second)
		var r ledger.Report
		if err := json.Unmarshal(resp.Result.Result, &r); err != nil {
			t.Fatalf("report result %q: %v", resp.Result.Result, err)
		}
		if r.Donor != want[key] {
			t.Fatalf("report of %s shows donor %+v, want %+v", key, r.Donor, want[key])
		}
		if r.Campaign != campaign {
			return fmt.Errorf("report shows campaign %+v, want %+v", r.Campaign, campaign)
		}
		return nil
	})
	slices.Sort(lat)
	t.Logf("%d calls, %d served directly by the owner; latency p50 %v p99 %v (through one peer hop when the entry worker is not the owner)",
		calls, direct, lat[len(lat)/2], lat[len(lat)*99/100])
}

// TestCallWhileOwnerStopped SIGSTOPs the owner of the keys being called:
// the callers' breakers for it open, calls fall back to the queue, and
// every call (retried with its id until it reports done) has exactly one
// effect once the partitions have moved.
func TestCallWhileOwnerStopped(t *testing.T) {
	c := newCluster(t)
	for _, id := range []string{"w1", "w2", "w3"} {
		c.start(id)
	}
	// A client of its own, to see its breakers change state.
	var clientLog syncBuffer
	cfg := c.clientConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&clientLog, nil))
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	owners := waitOwners(t, cl, 3)

	// Donors whose partitions w2 owns.
	var keys []string
	for i := 0; len(keys) < 10; i++ {
		k := fmt.Sprintf("stopped-%d", i)
		if owners[sharding.PartitionOf(k, sharding.DefaultPartitions)] == "w2" {
			keys = append(keys, k)
		}
	}

	c.signal("w2", syscall.SIGSTOP)
	stopped := time.Now()
	defer c.signal("w2", syscall.SIGCONT)

	var (
		mu      sync.Mutex
		want    = map[string]ledger.DonorState{}
		lat     []time.Duration
		durable atomic.Int64
		n       atomic.Int64
		wg      sync.WaitGroup
	)
	for g := range 20 {
		// Short deadlines trip the breakers fast; longer ones leave the
		// durable fallback time to finish once the partitions move.
		each := time.Second
		if g%2 == 0 {
			each = 3 * time.Second
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(stopped) < 5*time.Second; i++ {
				key := keys[(g+i)%len(keys)]
				d := ledger.Donation{AmountCents: int64(1 + g*1000 + i), Campaign: "stopped"}
				var mine []time.Duration
				resp := callUntilDone(t, cl, &mine, donationJob(fmt.Sprintf("stop-%d-%d", g, i), key, d), each)
				if resp.Durable {
					durable.Add(1)
				}
				n.Add(1)
				mu.Lock()
				want[key] = want[key].Apply(d)
				lat = append(lat, mine...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c.signal("w2", syscall.SIGCONT)

	for key, exp := range want {
		var got ledger.DonorState
		waitState(t, c, "donor", key, &got, func() bool { return got.Count >= exp.Count })
		if got != exp {
			t.Errorf("donor %s = %+v, want %+v (lost or doubled calls)", key, got, exp)
		}
	}
	opened := breakerOpenedInLogs(t, c)
	if strings.Contains(clientLog.String(), "to=open") {
		opened = append(opened, "client")
	}
	slices.Sort(lat)
	t.Logf("owner w2 stopped: %d calls done, %d through the durable fallback, breakers opened in %v; attempt latency p50 %v max %v",
		n.Load(), durable.Load(), opened, lat[len(lat)/2], lat[len(lat)-1])
	if durable.Load() == 0 {
		t.Errorf("no call fell back to the durable path while the owner was stopped")
	}
	if len(opened) == 0 {
		t.Errorf("no worker's breaker for the stopped owner opened")
	}
}

func donationJob(id, key string, d ledger.Donation) *workerpb.Job {
	b, _ := json.Marshal(d)
	return &workerpb.Job{Id: id, Handler: ledger.HandlerDonate, Key: key, Payload: b}
}

// callUntilDone calls with the given per-attempt deadline and retries with
// the same id until the job reports done: the id makes that safe.
func callUntilDone(t *testing.T, cl *client.Client, lat *[]time.Duration, job *workerpb.Job, each time.Duration) *workerpb.CallResponse {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), each)
		start := time.Now()
		resp, err := cl.Call(ctx, job)
		cancel()
		*lat = append(*lat, time.Since(start))
		if err == nil {
			if resp.Result.State != workerpb.JobResult_DONE {
				t.Errorf("call %s ended %v: %s", job.Id, resp.Result.State, resp.Result.Error)
			}
			return resp
		}
		if time.Now().After(deadline) {
			t.Errorf("call %s did not succeed within a minute: %v", job.Id, err)
			return &workerpb.CallResponse{Result: &workerpb.JobResult{}}
		}
		time.Sleep(20 * time.Millisecond) // a pause before the call goes again
	}
}

// waitOwners waits until the members own every partition, each its share
// (P/members rounded down or up: the layout has settled), and returns the
// owner of each.
func waitOwners(t *testing.T, cl *client.Client, members int) map[int]string {
	t.Helper()
	var owners map[int]string
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.Status(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("status: %v", err)
		}
		owners = map[int]string{}
		for _, m := range st.Members {
			for _, p := range m.Partitions {
				owners[int(p.Partition)] = m.Id
			}
		}
		if len(st.Members) != members || len(owners) != int(st.Partitions) {
			return fmt.Errorf("%d members own %d of %d partitions, want %d members owning all", len(st.Members), len(owners), st.Partitions, members)
		}
		lo, hi := int(st.Partitions)/members, (int(st.Partitions)+members-1)/members
		for _, m := range st.Members {
			if n := len(m.Partitions); n < lo || n > hi {
				return fmt.Errorf("%s owns %d partitions, its share is %d to %d", m.Id, n, lo, hi)
			}
		}
		return nil
	})
	return owners
}

// breakerOpenedInLogs lists the workers that logged a breaker opening.
func breakerOpenedInLogs(t *testing.T, c *cluster) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "peer breaker changed state") && strings.Contains(line, "to=open") {
				out = append(out, strings.TrimSuffix(filepath.Base(f), ".log"))
				break
			}
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
