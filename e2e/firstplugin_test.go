package e2e

import (
	"context"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/hashicorp/consul/api"
)

// TestFirstPlugin follows the README's "Your first plugin": a plugin built
// from its main.go in a module of its own outside the checkout (a replace
// points it at the checkout), run by a cluster that scripts/cluster.sh
// starts with CORRAL_PLUGINS (make up PLUGINS=...), a job submitted with
// coordinator and its state read back. Then up again is a no-op for the
// running cluster, and a second cluster on the same ports is refused
// before it starts anything.
func TestFirstPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	redisBin, consulBin := serversForScript(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bins := buildBinaries(t)

	// The module, as the README writes it.
	mod := filepath.Join(t.TempDir(), "inventory")
	if err := os.Mkdir(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	if rel, err := filepath.Rel(root, mod); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the module %s must be outside the checkout %s", mod, root)
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), []byte(readmeFirstPluginMain(t, root)), 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	goCmd("mod", "init", "example.com/inventory")
	goCmd("mod", "edit", "-require", "github.com/corralhq/corral@v0.0.0", "-replace", "github.com/corralhq/corral="+root)
	goCmd("mod", "tidy")
	goCmd("build", "-o", "inventory-plugin", ".")
	plugin := filepath.Join(mod, "inventory-plugin")

	// The cluster, as make up PLUGINS=... starts it, on ports of its own.
	consulPort, redisPort, base := scriptPorts(t, 2)
	e := &scriptEnv{root: root, state: filepath.Join(t.TempDir(), "state"), consulPort: consulPort, redisPort: redisPort,
		base: base, workers: 2, bin: bins, consulBin: consulBin, redisBin: redisBin, plugins: []string{plugin}}
	t.Cleanup(func() {
		if t.Failed() {
			dumpScriptLogs(t, e.state)
		}
		if out, err := e.run(t, "down"); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	if out, err := e.run(t, "up"); err != nil {
		t.Fatalf("cluster.sh up: %v\n%s", err, out)
	}
	consulAddr := "127.0.0.1:" + strconv.Itoa(consulPort)
	coordinator := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bins, "coordinator"), append([]string{"--consul", consulAddr}, args...)...)
		cmd.Env = e.environ() // its CORRAL_STATE holds the cluster's certificates
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("coordinator %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
		return string(out)
	}

	out := coordinator("submit", "--handler", "stock.add", "--key", "widget", "--payload", `{"qty": 5}`, "--id", "restock-1", "--wait")
	if want := `{"qty":5,"adds":1}`; !strings.Contains(out, want) {
		t.Fatalf("submit --wait printed %q, want the result %s", out, want)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		state := strings.TrimSpace(coordinator("state", "stock", "widget"))
		if state == `{"qty":5,"adds":1}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state stock widget is %s 30s after the job's result; want {\"qty\":5,\"adds\":1}", state)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status := coordinator("status"); strings.Count(status, "inventory@") != 2 {
		t.Errorf("status should show the inventory plugin on both workers:\n%s", status)
	}
	// /metrics has no authentication: the local cluster binds it to
	// loopback (a worker logs the address it bound, Consul has the one it
	// publishes).
	consul, err := api.NewClient(&api.Config{Address: consulAddr})
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := consul.Health().Service(discovery.DefaultService, "", true, nil)
	if err != nil || len(entries) != 2 {
		t.Fatalf("workers in Consul: %d, %v", len(entries), err)
	}
	bound := regexp.MustCompile(`msg="serving metrics" .*\baddr=(\S+)`)
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(e.state, "logs", en.Service.ID+".log"))
		if err != nil {
			t.Fatal(err)
		}
		m := bound.FindSubmatch(b)
		if m == nil {
			t.Errorf("worker %s logged no metrics address", en.Service.ID)
			continue
		}
		for _, addr := range []string{string(m[1]), en.Service.Meta["metrics"]} {
			host, _, err := net.SplitHostPort(addr)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				t.Errorf("worker %s: /metrics on %q (bound; published %q), want loopback", en.Service.ID, addr, en.Service.Meta["metrics"])
			}
		}
	}

	// up again keeps the running cluster: nothing restarted, nothing added.
	before := pidFiles(t, e.state)
	if out, err := e.run(t, "up"); err != nil {
		t.Fatalf("second cluster.sh up of the same state: %v\n%s", err, out)
	}
	if after := pidFiles(t, e.state); !maps.Equal(before, after) {
		t.Errorf("up of a running cluster changed its processes: %v, then %v", before, after)
	}

	// A second cluster on the same ports is refused, and starts nothing.
	other := *e
	other.state = filepath.Join(t.TempDir(), "other")
	out, err = other.run(t, "up")
	if err == nil {
		other.run(t, "down")
		t.Fatalf("a second cluster on the ports of a running one was started:\n%s", out)
	}
	for _, want := range []string{"port " + strconv.Itoa(consulPort) + " (Consul HTTP API)", "CORRAL_CONSUL_PORT moves it",
		"port " + strconv.Itoa(redisPort) + " (Redis)", "CORRAL_REDIS_PORT moves it",
		"port " + strconv.Itoa(base+1) + " (worker-1", "CORRAL_WORKER_PORT moves it", "nothing started"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if _, err := exec.LookPath("ss"); err == nil {
		if want := "consul (pid " + before["consul"] + ")"; !strings.Contains(out, want) {
			t.Errorf("the refusal does not name the holder, %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(other.state); !os.IsNotExist(err) {
		t.Errorf("the refused cluster made its state folder %s (%v)", other.state, err)
	}
}

// readmeFirstPluginMain returns the main.go of the README's "Your first
// plugin": the section's Go code block.
func readmeFirstPluginMain(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Your first plugin\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Your first plugin" section`)
	}
	section := readme[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal(`README.md's "Your first plugin" has no Go code block`)
	}
	return m[1]
}
