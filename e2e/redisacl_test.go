package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"
)

// The users of deploy/redis/users.acl.
const (
	redisWorkerUser = "corral-worker"
	redisAdminUser  = "corral-admin"
)

// lockedCluster is a cluster run as docs/security.md says to run one:
// Redis with the users of deploy/redis/users.acl (the workers log in as
// corral-worker, the default user is off), Consul with ACLs and the
// workers holding a token of deploy/consul/worker-policy.hcl, the gRPC API
// on mutual TLS. The secrets reach the workers through their environment.
type lockedCluster struct {
	*cluster
	workerPass, adminPass, consulToken string
}

func newLockedCluster(t *testing.T, workerFlags ...string) *lockedCluster {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	lc := &lockedCluster{workerPass: "w-" + randomHex(t), adminPass: "a-" + randomHex(t)}
	c := &cluster{t: t, bins: buildBinaries(t), dir: t.TempDir(), workers: map[string]*exec.Cmd{}}
	c.redis = testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true,
		ACLFile:  redisACLFile(t, root, lc.workerPass, lc.adminPass),
		Username: redisAdminUser, Password: lc.adminPass})
	c.consul = testenv.StartConsul(t, testenv.ConsulOptions{HCL: []string{aclHCL}})
	t.Cleanup(c.stopAll)
	lc.consulToken = consulPolicyToken(t, c.consul.Addr, filepath.Join(root, "deploy", "consul", "worker-policy.hcl"))
	c.pki = testenv.NewPKI(t)
	c.flags = append([]string{"--redis-username", redisWorkerUser}, workerFlags...)
	c.env = []string{"CORRAL_REDIS_PASSWORD=" + lc.workerPass, "CONSUL_HTTP_TOKEN=" + lc.consulToken}
	lc.cluster = c
	return lc
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// redisACLFile is deploy/redis/users.acl with its password placeholders
// filled in as the file's instructions say (the SHA-256 of each password).
func redisACLFile(t *testing.T, root, workerPass, adminPass string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "redis", "users.acl"))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(p string) string { h := sha256.Sum256([]byte(p)); return hex.EncodeToString(h[:]) }
	acl := strings.NewReplacer("<sha256-of-the-worker-password>", sum(workerPass),
		"<sha256-of-the-admin-password>", sum(adminPass)).Replace(string(b))
	if strings.Contains(acl, "<") {
		t.Fatalf("users.acl has a placeholder this test does not fill:\n%s", acl)
	}
	path := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(path, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// consulPolicyToken creates a policy from the rules in file, on an agent
// started with aclHCL, and returns a token that has it alone.
func consulPolicyToken(t *testing.T, addr, file string) string {
	t.Helper()
	rules, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := api.NewClient(&api.Config{Address: addr, Token: "root-token"})
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: strings.TrimSuffix(filepath.Base(file), ".hcl"), Rules: string(rules)}, nil)
	if err != nil {
		t.Fatalf("create policy from %s: %v", file, err)
	}
	tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok.SecretID
}

// checkNoACLDenials fails the test for every command or key Redis refused
// a worker, naming them, so a new command of the worker shows here first.
func checkNoACLDenials(t *testing.T, admin redis.Cmdable) {
	t.Helper()
	entries, err := admin.ACLLog(context.Background(), 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Username != redisWorkerUser {
			continue
		}
		t.Errorf("Redis refused the worker user %d time(s): %s %q (context %s); grant it in deploy/redis/users.acl",
			e.Count, e.Reason, e.Object, e.Context)
	}
}

// TestRedisLeastPrivilege runs three workers logged in to Redis as the
// corral-worker user of deploy/redis/users.acl under a load that takes
// every path of the job: submissions (some delayed), the relay of the
// campaign.credit jobs they emit, calls (direct, forwarded, and one that
// queries another partition), a drain and a worker joining (releases and
// claims), a reshard from 64 to 128 partitions, dead letters listed,
// replayed and purged, and a key held by a job that keeps failing while
// the key's next job waits behind it (the chaos plugin runs beside the
// donations one). Every total must come
// out exact, and Redis must not have refused the worker anything. The
// user can do no more than that: the default user is off, and other keys,
// channels and commands are refused.
func TestRedisLeastPrivilege(t *testing.T) {
	lc := newLockedCluster(t, "--audit", "--retry-backoff", "20ms", "--retry-backoff-max", "100ms")
	c := lc.cluster
	c.flags = append(c.flags, "--plugin", chaosPlugin(t, c), "--plugin", sessionsPlugin(t, c))
	admin := c.redis.Client(t)
	t.Cleanup(func() {
		if t.Failed() {
			checkNoACLDenials(t, admin) // a refusal may be why
		}
	})
	for _, id := range []string{"w1", "w2", "w3"} {
		c.start(id)
	}
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	jobs, exp := workload.Generate(workload.Spec{Seed: 7, Donations: 600, Donors: 80, Campaigns: 10})
	// One job in five is delayed by one to three seconds.
	for i, j := range jobs {
		if i%5 == 0 {
			j.NotBeforeMs = time.Now().Add(time.Second + time.Duration(i%3)*time.Second).UnixMilli()
		}
	}
	for i := 0; i < len(jobs); i += 30 {
		submitWithRetry(ctx, t, cl, jobs[i:min(i+30, len(jobs))])
		switch i {
		case 180:
			if out, err := c.coordinator("drain", "w2"); err != nil {
				t.Fatalf("drain w2: %v (%s)", err, out)
			}
			c.signal("w2", syscall.SIGTERM)
		case 360:
			c.start("w4")
		case 420:
			// The rest of the run on twice the partitions: every split's
			// command is the worker user's too, with delayed jobs in flight.
			if out, err := c.coordinator("reshard", "--partitions", "128"); err != nil {
				t.Fatalf("reshard: %v (%s)", err, out)
			}
			c.parts.Store(128)
		}
	}

	// Calls: straight to the owner or through another worker, then one
	// that reads another partition's committed state.
	for i := 0; i < 6; i++ {
		p, _ := json.Marshal(map[string]any{"amount_cents": 100 + i, "campaign": "acl-calls"})
		resp, err := cl.Call(ctx, &workerpb.Job{Id: fmt.Sprintf("acl-call-%d", i), Handler: "donor.donate",
			Key: fmt.Sprintf("acl-caller-%d", i), Payload: p})
		if err != nil || resp.GetResult().GetState() != workerpb.JobResult_DONE {
			t.Fatalf("call %d: %v %v", i, resp, err)
		}
	}
	// A key held by a job that fails until it is dead-lettered; the key's
	// next job waits behind it, then runs.
	submitWithRetry(ctx, t, cl, []*workerpb.Job{
		addJob("acl-held-1", "acl-held", 1, 10, "acl-bucket", "fail"),
		addJob("acl-held-2", "acl-held", 2, 20, "acl-bucket", ""),
	})
	// The delayed, dead-lettered and replayed paths through the CLI.
	if out, err := c.coordinator("submit", "--handler", "donor.donate", "--key", "acl-late", "--id", "acl-late-1", "--in", "2s",
		"--payload", `{"amount_cents": 300, "campaign": "acl-calls"}`); err != nil {
		t.Fatalf("delayed submit: %v (%s)", err, out)
	}
	if out, err := c.coordinator("submit", "--handler", "donor.donate", "--key", "acl-bad", "--id", "acl-bad-1",
		"--payload", `{"amount_cents": -5, "campaign": "acl-calls"}`); err != nil {
		t.Fatalf("submit of a failing job: %v (%s)", err, out)
	}
	if _, err := c.coordinator("result", "--wait", "20s", "acl-bad-1"); err == nil || !strings.Contains(err.Error(), "dead-lettered") {
		t.Fatalf("result of the failing job: %v", err)
	}
	if out, err := c.coordinator("dlq", "list"); err != nil || !strings.Contains(out, "acl-bad-1") {
		t.Fatalf("dlq list: %q %v", out, err)
	}
	if out, err := c.coordinator("dlq", "replay", "acl-bad-1"); err != nil || strings.TrimSpace(out) != "replayed 1" {
		t.Fatalf("dlq replay: %q %v", out, err)
	}
	waitDead(t, ctx, cl, "acl-bad-1")
	waitDead(t, ctx, cl, "acl-held-1")
	if out, err := c.coordinator("dlq", "purge", "--all"); err != nil || strings.TrimSpace(out) != "purged 2" {
		t.Fatalf("dlq purge: %q %v", out, err)
	}
	// Inspection and cancel: every listing (the running one asks each
	// member), a job shown in each kind of state, and a delayed job
	// cancelled by its partition's owner in a fenced commit.
	if out, err := c.coordinator("submit", "--handler", "donor.donate", "--key", "acl-cancel", "--id", "acl-cancel-1", "--in", "1h",
		"--payload", `{"amount_cents": 7, "campaign": "acl-cancelled"}`); err != nil {
		t.Fatalf("delayed submit to cancel: %v (%s)", err, out)
	}
	for _, st := range []string{"queued", "delayed", "retrying", "running", "done", "dead", "rejected", "cancelled"} {
		if out, err := c.coordinator("jobs", "list", "--state", st); err != nil {
			t.Fatalf("jobs list --state %s: %v (%s)", st, err, out)
		}
	}
	if out, err := c.coordinator("jobs", "list", "--state", "delayed", "--key", "acl-cancel"); err != nil || !strings.Contains(out, "acl-cancel-1") {
		t.Fatalf("jobs list --state delayed --key acl-cancel: %q %v", out, err)
	}
	for _, id := range []string{"acl-cancel-1", "acl-held-2", "acl-late-1"} {
		if out, err := c.coordinator("jobs", "show", id); err != nil {
			t.Fatalf("jobs show %s: %v (%s)", id, err, out)
		}
	}
	if _, err := c.coordinator("jobs", "show", "acl-nope"); err == nil || !strings.Contains(err.Error(), "no job acl-nope") {
		t.Fatalf("jobs show of an unknown job: %v, want no job", err)
	}
	if out, err := c.coordinator("jobs", "cancel", "acl-cancel-1"); err != nil || strings.TrimSpace(out) != "acl-cancel-1: cancelled" {
		t.Fatalf("jobs cancel acl-cancel-1: %q %v", out, err)
	}
	if out, err := c.coordinator("jobs", "list", "--state", "cancelled"); err != nil || !strings.Contains(out, "acl-cancel-1") {
		t.Fatalf("jobs list --state cancelled: %q %v", out, err)
	}
	out, err := c.coordinator("result", "--wait", "20s", "acl-late-1")
	if err != nil {
		t.Fatalf("result of the delayed job: %q %v", out, err)
	}
	out, err = c.coordinator("call", "--handler", "donor.report", "--key", "acl-caller-0", "--payload", `{"campaign": "acl-calls"}`)
	if err != nil || !strings.Contains(out, `"total_cents"`) {
		t.Fatalf("report call: %q %v", out, err)
	}
	rep, err := workload.WaitFor(ctx, cl, exp)
	if err != nil || !rep.OK() {
		t.Fatalf("totals with the least-privilege Redis user: %s %v", rep, err)
	}
	var campaign struct {
		TotalCents int64 `json:"total_cents"`
		Count      int64 `json:"count"`
	}
	waitState(t, c, "campaign", "acl-calls", &campaign, func() bool { return campaign.Count == 7 })
	if campaign.TotalCents != 100+101+102+103+104+105+300 {
		t.Errorf("campaign acl-calls = %+v, want the six calls and the delayed job", campaign)
	}
	var held chaosAccount
	waitState(t, c, "account", "acl-held", &held, func() bool { return held.Count == 1 })
	if held.TotalCents != 20 || held.OutOfOrder != 0 {
		t.Errorf("account acl-held = %+v, want only its second job, in order", held)
	}
	// Entities and broadcasts: a listing, a fenced delete, a state with a
	// TTL and a broadcast, under the worker's user.
	if out, err := c.coordinator("entities", "list", "donor", "--limit", "5"); err != nil || len(strings.Fields(out)) != 5 {
		t.Fatalf("entities list donor --limit 5: %q %v", out, err)
	}
	if out, err := c.coordinator("entities", "delete", "donor", "acl-caller-5"); err != nil {
		t.Fatalf("entities delete: %q %v", out, err)
	}
	if out, err := c.coordinator("submit", "--handler", "session.visit", "--key", "acl-session", "--id", "acl-visit-1",
		"--payload", `{"page":"/"}`); err != nil {
		t.Fatalf("submit of a TTL'd entity's job: %q %v", out, err)
	}
	if out, err := c.coordinator("result", "--wait", "20s", "acl-visit-1"); err != nil {
		t.Fatalf("result of the TTL'd entity's job: %q %v", out, err)
	}
	if out, err := c.coordinator("broadcast", "--handler", "cache.invalidate", "--payload", `{"prefix":"x"}`, "--id", "acl-bc-1"); err != nil {
		t.Fatalf("broadcast: %q %v", out, err)
	}
	t.Logf("least-privilege run: %s", rep)
	checkNoACLDenials(t, admin)
	logUnusedGrants(t, admin)

	// What the user cannot do.
	noAuth := redis.NewClient(&redis.Options{Addr: c.redis.Addr, DisableIdentity: true})
	defer noAuth.Close()
	if err := noAuth.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without logging in: %v, want NOAUTH", err)
	}
	for _, pass := range []string{"", lc.workerPass, lc.adminPass} {
		def := redis.NewClient(&redis.Options{Addr: c.redis.Addr, Username: "default", Password: pass, DisableIdentity: true})
		if err := def.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") && !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("the default user logged in (password %d chars): %v", len(pass), err)
		}
		def.Close()
	}
	// A worker that logs in as the default user stops at once, saying so.
	runOut, _, runErr := runWorker(t, c.bins, "--redis", c.redis.Addr, "--redis-password", lc.workerPass, "--consul", c.consul.Addr)
	if runErr == nil || !strings.Contains(runOut, "Redis refused the credentials") {
		t.Errorf("worker logging in as the default user: %v\n%s", runErr, runOut)
	}
	worker := redis.NewClient(&redis.Options{Addr: c.redis.Addr, Username: redisWorkerUser, Password: lc.workerPass, DisableIdentity: true})
	defer worker.Close()
	for what, cmd := range map[string][]any{
		"CONFIG GET (it shows passwords)": {"CONFIG", "GET", "requirepass"},
		"FLUSHALL":                        {"FLUSHALL"},
		"KEYS":                            {"KEYS", "*"},
		"ACL LIST":                        {"ACL", "LIST"},
		"a key outside corral:*":          {"GET", "billing:secret"},
		"a key of a look-alike prefix":    {"SET", "corral:x", "1"},
		"a script on a key outside":       {"EVAL", "return redis.call('GET', KEYS[1])", "1", "billing:secret"},
		"another channel":                 {"PUBLISH", "billing", "x"},
	} {
		if err := worker.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("the worker user ran %s: %v, want NOPERM", what, err)
		}
	}
}

// logUnusedGrants logs the commands users.acl grants the worker that this
// run never sent (INFO commandstats counts commands from scripts too): a
// grant the code no longer needs shows here.
func logUnusedGrants(t *testing.T, admin *redis.Client) {
	t.Helper()
	root, _ := testenv.RepoRoot()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "redis", "users.acl"))
	if err != nil {
		t.Fatal(err)
	}
	stats, err := admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var unused []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != redisWorkerUser {
			continue
		}
		for _, r := range f[2:] {
			if !strings.HasPrefix(r, "+") {
				continue
			}
			name := r[1:]
			cmd, _, _ := strings.Cut(name, "|")
			if !strings.Contains(stats, "cmdstat_"+name+":") && !strings.Contains(stats, "cmdstat_"+cmd+":") {
				unused = append(unused, name)
			}
		}
	}
	sort.Strings(unused)
	t.Logf("granted to the worker but not sent in this run: %v", unused)
}
