package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestRedisCluster runs two workers against a real three-master Redis
// Cluster: submit, fenced commit, outbox relay to other partitions, and a
// graceful hand-off. Redis Cluster refuses any command or script whose keys
// span hash slots, so exact totals prove the job path stays within one
// slot per command. The workers log in as the least-privilege user of
// deploy/redis/users.acl, which must be enough on a cluster too.
func TestRedisCluster(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	workerPass, adminPass := "w-"+randomHex(t), "a-"+randomHex(t)
	rc := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{ACLFile: redisACLFile(t, root, workerPass, adminPass),
		Username: redisAdminUser, Password: adminPass})
	c := newCluster(t, "--redis", strings.Join(rc.Addrs, ","), "--audit", "--redis-username", redisWorkerUser)
	c.env = []string{"CORRAL_REDIS_PASSWORD=" + workerPass, "CORRAL_SESSION_TTL=1s"}
	c.flags = append(c.flags, "--plugin", sessionsPlugin(t, c))
	c.start("w1")
	c.start("w2")

	const n = 600
	jobs, exp := workload.Generate(workload.Spec{Seed: 11, Donations: n, Donors: 60, Campaigns: 9})
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < len(jobs); i += 50 {
		submitWithRetry(ctx, t, cl, jobs[i:min(i+50, len(jobs))])
		if i == n/2 {
			// A hand-off releases and claims partitions on the cluster too.
			c.start("w3")
		}
	}
	rep, err := workload.WaitFor(ctx, cl, exp)
	if err != nil || !rep.OK() {
		t.Fatalf("totals on Redis Cluster: %s err %v", rep, err)
	}

	// The read side and the operator commands run on the cluster too.
	for _, args := range [][]string{
		{"status"}, {"dlq", "list"}, {"result", jobs[0].Id}, {"locate", "alice", "bob"},
		{"call", "--handler", "donor.donate", "--key", "cluster-caller", "--payload", `{"amount_cents": 700, "campaign": "wells"}`},
		{"drain", "w3"},
		{"submit", "--handler", "donor.donate", "--key", "after-drain", "--payload", `{"amount_cents": 300, "campaign": "wells"}`},
	} {
		if out, err := c.coordinator(args...); err != nil {
			t.Errorf("coordinator %s on Redis Cluster: %v (%s)", strings.Join(args, " "), err, out)
		}
	}
	var donor struct {
		TotalCents int64 `json:"total_cents"`
	}
	waitState(t, c, "donor", "after-drain", &donor, func() bool { return donor.TotalCents == 300 })

	// Entities: a listing, a delete, and states with a TTL whose expired
	// keys later commits drop from their partitions' indexes.
	if out, err := c.coordinator("entities", "list", "donor"); err != nil || len(strings.Fields(out)) < 60 {
		t.Errorf("entities list donor on Redis Cluster: %v (%d keys)", err, len(strings.Fields(out)))
	}
	if out, err := c.coordinator("entities", "delete", "donor", "after-drain"); err != nil {
		t.Errorf("entities delete on Redis Cluster: %v (%s)", err, out)
	}
	visit := func(prefix string, n int) {
		var vs []*workerpb.Job
		for i := range n {
			vs = append(vs, &workerpb.Job{Id: fmt.Sprintf("%s-v%d", prefix, i), Handler: "session.visit", Key: fmt.Sprintf("%s-%d", prefix, i), Payload: []byte(`{"page":"/"}`)})
		}
		submitWithRetry(ctx, t, cl, vs)
		if _, err := cl.Results(ctx, 20*time.Second, vs[len(vs)-1].Id); err != nil {
			t.Fatal(err)
		}
	}
	visit("brief", 20)
	// The brief sessions' states expire (their TTL is 1 s); the later
	// commits then find them gone.
	brief := make([]string, 20)
	for i := range brief {
		brief[i] = fmt.Sprintf("brief-%d", i)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		sts, err := cl.State(ctx, "session", brief...)
		if err != nil {
			return err
		}
		var alive []string
		for _, st := range sts {
			if st.Found {
				alive = append(alive, st.Key)
			}
		}
		if len(alive) > 0 {
			return fmt.Errorf("brief sessions not expired yet: %v", alive)
		}
		return nil
	})
	visit("later", 200)
	if out, err := c.coordinator("entities", "list", "session"); err != nil || strings.Contains(out, "brief-") {
		t.Errorf("entities list session after the TTL: %v\n%s", err, out)
	}

	// Every master holds part of the keyspace, so the run crossed nodes.
	var sizes []int64
	for _, addr := range rc.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr, Username: redisAdminUser, Password: adminPass})
		n, err := node.DBSize(ctx).Result()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", addr, err)
		}
		checkNoACLDenials(t, node)
		node.Close()
		if n == 0 {
			t.Errorf("master %s holds no keys; the keyspace did not spread", addr)
		}
		sizes = append(sizes, n)
	}
	// Some commands fail without failing the run (a health report, the lag
	// of a scrape): none may have been refused for crossing slots.
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"CROSSSLOT", "non local key", "MOVED", "ASK "} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s has %q: a command crossed hash slots or missed its node", filepath.Base(f), bad)
			}
		}
	}
	t.Logf("Redis Cluster run: %s; keys per master %v", rep, sizes)
}
