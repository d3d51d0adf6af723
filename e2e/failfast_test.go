package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/hashicorp/consul/api"
)

// aclHCL turns on ACLs with default deny. The agent's own default token is
// the management token only so the test harness can see the agent become
// ready; a request that names a token is judged by that token alone.
const aclHCL = `acl { enabled = true
  default_policy = "deny"
  tokens { initial_management = "root-token", agent = "root-token", default = "root-token" } }`

// runWorker runs the worker binary to its exit (or kills it after a
// minute) and returns its output, how long it ran and its exit error.
func runWorker(t *testing.T, bins string, args ...string) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bins, "worker"),
		append([]string{"--plugin", filepath.Join(bins, "donations-plugin")}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	return out.String(), time.Since(start), err
}

func TestWorkerRefusesWrongRedisPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	bins := buildBinaries(t)
	r := testenv.StartRedis(t, testenv.RedisOptions{Password: "the-right-one"})
	consul := testenv.StartConsul(t)
	out, took, err := runWorker(t, bins, "--redis", r.Addr, "--redis-password", "a-wrong-one", "--consul", consul.Addr)
	if err == nil || !strings.Contains(out, "Redis refused the credentials") || !strings.Contains(out, "--redis-password") {
		t.Fatalf("worker with a wrong Redis password: err %v, output:\n%s", err, out)
	}
	t.Logf("exited with %v after %v: %s", err, took.Round(time.Millisecond), strings.TrimSpace(out))
}

func TestWorkerRefusesBadConsulToken(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	bins := buildBinaries(t)
	r := testenv.StartRedis(t)
	consul := testenv.StartConsul(t, testenv.ConsulOptions{HCL: []string{aclHCL}})
	out, took, err := runWorker(t, bins, "--redis", r.Addr, "--consul", consul.Addr,
		"--consul-token", "00000000-0000-0000-0000-000000000bad")
	if err == nil || !strings.Contains(out, "Consul refused the ACL token") || !strings.Contains(out, "--consul-token") {
		t.Fatalf("worker with a bad Consul token: err %v, output:\n%s", err, out)
	}
	t.Logf("exited with %v after %v: %s", err, took.Round(time.Millisecond), strings.TrimSpace(out))
}

// TestWorkerPolicyIsEnough starts a worker with a token of
// deploy/consul/worker-policy.hcl alone and checks it becomes a healthy
// member that runs jobs: the documented least privilege is sufficient.
func TestWorkerPolicyIsEnough(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, "deploy", "consul", "worker-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bins: buildBinaries(t), dir: t.TempDir(), workers: map[string]*exec.Cmd{}}
	c.redis = testenv.StartRedis(t)
	c.consul = testenv.StartConsul(t, testenv.ConsulOptions{HCL: []string{aclHCL}})
	t.Cleanup(c.stopAll)
	admin, err := api.NewClient(&api.Config{Address: c.consul.Addr, Token: "root-token"})
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "corral-worker", Rules: string(rules)}, nil)
	if err != nil {
		t.Fatalf("create policy from worker-policy.hcl: %v", err)
	}
	tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Description: "corral worker",
		Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.flags = []string{"--consul-token", tok.SecretID}
	c.start("w1")
	c.start("w2")
	// The coordinator gets a token of coordinator-policy.hcl alone.
	crules, err := os.ReadFile(filepath.Join(root, "deploy", "consul", "coordinator-policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	cpol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "corral-coordinator", Rules: string(crules)}, nil)
	if err != nil {
		t.Fatalf("create policy from coordinator-policy.hcl: %v", err)
	}
	ctok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Description: "corral coordinator",
		Policies: []*api.ACLTokenPolicyLink{{ID: cpol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.coordinator("--consul-token", ctok.SecretID, "submit", "--handler", "donor.donate", "--key", "zaid",
		"--payload", `{"amount_cents": 500, "campaign": "wells"}`, "--id", "acl-1")
	if err != nil {
		t.Fatalf("submit with the coordinator token through workers holding the worker token: %v (%s)", err, out)
	}
	reader, _ := api.NewClient(&api.Config{Address: c.consul.Addr, Token: ctok.SecretID})
	if err := reader.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: discovery.DefaultService, ID: "intruder", Port: 1}); err == nil {
		t.Errorf("the coordinator token could register a worker; the policy must be read-only")
	}
	var donor struct {
		TotalCents int64 `json:"total_cents"`
	}
	waitState(t, c, "donor", "zaid", &donor, func() bool { return donor.TotalCents == 500 })
	// The token can do no more than the policy says.
	limited, _ := api.NewClient(&api.Config{Address: c.consul.Addr, Token: tok.SecretID})
	if _, err := limited.KV().Put(&api.KVPair{Key: "corral/x", Value: []byte("1")}, nil); err == nil {
		t.Errorf("the worker token could write KV; the policy must not allow it")
	}
}

// TestConsulUnreachableIsOneSentence: a worker and the coordinator pointed
// at an address where no Consul agent listens stop with one line naming
// the address, the reason and the flag to fix, not a chain of wrapped
// errors with URLs.
func TestConsulUnreachableIsOneSentence(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	bins := buildBinaries(t)
	r := testenv.StartRedis(t)
	// Nothing listens on port 1 (tcpmux): a free port could be taken by
	// another test's agent meanwhile.
	addr := "127.0.0.1:1"
	want := "cannot reach the Consul agent at " + addr + " (connection refused): start it, or point --consul (env CORRAL_CONSUL_ADDR) at a running agent"
	out, _, err := runWorker(t, bins, "--redis", r.Addr, "--consul", addr)
	// Log lines (the warning about serving without TLS) may come before it;
	// the error is the last line, and the only one that says "worker:".
	lines := strings.Split(strings.TrimSpace(out), "\n")
	errLines := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "worker: ") {
			errLines++
		}
	}
	if err == nil || lines[len(lines)-1] != "worker: "+want || errLines != 1 {
		t.Errorf("worker with no Consul agent: err %v, output:\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(bins, "coordinator"), "--consul", addr, "status")
	b, err := cmd.CombinedOutput()
	if err == nil || strings.TrimSpace(string(b)) != "coordinator: "+want {
		t.Errorf("coordinator status with no Consul agent: err %v, output:\n%s", err, b)
	}
}
