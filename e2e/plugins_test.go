package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/testenv"
)

// startPlugin launches worker id with plugin instead of the donations
// plugin the cluster's start uses, and waits until Consul lists it.
func (c *cluster) startPlugin(id, plugin string) {
	c.t.Helper()
	c.launch(id, workerRun{plugin: plugin})
}

// pluginPids lists the plugin processes of worker id: its children.
func (c *cluster) pluginPids(id string) []int {
	c.t.Helper()
	c.mu.Lock()
	cmd := c.workers[id]
	c.mu.Unlock()
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/*/children")
	var pids []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// installPlugin copies src to dst the way a deploy does (write beside,
// rename), so running processes keep their old file.
func installPlugin(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".new", b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".new", dst); err != nil {
		t.Fatal(err)
	}
}

// submitAll submits jobs in small batches, calling during(n) after each
// batch with the number submitted so far.
func submitAll(ctx context.Context, t *testing.T, c *cluster, spec workload.Spec, during func(n int)) workload.Expected {
	t.Helper()
	cl := c.client()
	jobs, exp := workload.Generate(spec)
	const batch = 20
	for i := 0; i < len(jobs); i += batch {
		part := jobs[i:min(i+batch, len(jobs))]
		submitWithRetry(ctx, t, cl, part)
		if during != nil {
			during(i + len(part))
		}
	}
	return exp
}

func verifyTotals(ctx context.Context, t *testing.T, c *cluster, exp workload.Expected, what string) {
	t.Helper()
	rep, err := workload.WaitFor(ctx, c.client(), exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", what, rep)
	if !rep.OK() {
		t.Fatalf("totals wrong %s: %s", what, rep)
	}
}

// TestHotUpgradeUnderLoad replaces the donations plugin binary of two
// workers and reloads it with `coordinator reload` in the middle of 2,000
// donations: nothing lost or counted twice, and status shows the new
// version on every worker.
func TestHotUpgradeUnderLoad(t *testing.T) {
	c := newCluster(t, "--audit")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(c.dir, "donations-plugin-v2")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=0.2.0", "-o", v2, "./examples/donations/plugin")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build v2: %v\n%s", err, out)
	}
	plugin := filepath.Join(c.dir, "donations-plugin")
	installPlugin(t, filepath.Join(c.bins, "donations-plugin"), plugin)
	c.startPlugin("w1", plugin)
	c.startPlugin("w2", plugin)
	if out, _ := c.coordinator("status"); strings.Count(out, "donations@0.1.0") != 2 {
		t.Fatalf("before the upgrade status shows:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var reloaded atomic.Bool
	exp := submitAll(ctx, t, c, workload.Spec{Seed: 7, Donations: 2000, Donors: 150, Campaigns: 12}, func(n int) {
		if n < 1000 || reloaded.Swap(true) {
			return
		}
		installPlugin(t, v2, plugin)
		start := time.Now()
		out, err := c.coordinator("reload")
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		t.Logf("coordinator reload after %d submissions took %v:\n%s", n, time.Since(start), out)
		if strings.Count(out, "donations@0.2.0") != 2 {
			t.Fatalf("reload printed:\n%s", out)
		}
	})
	verifyTotals(ctx, t, c, exp, "after a hot upgrade")
	out, err := c.coordinator("status")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "donations@0.2.0") != 2 || strings.Contains(out, "donations@0.1.0") {
		t.Fatalf("after the upgrade status shows:\n%s", out)
	}
	checkAudit(t, c)
	// One plugin process per worker: the old ones are gone.
	for _, id := range []string{"w1", "w2"} {
		if pids := c.pluginPids(id); len(pids) != 1 {
			t.Errorf("worker %s runs plugin processes %v, want one", id, pids)
		}
	}

	// Roll w1 back with SIGHUP instead of the API.
	installPlugin(t, filepath.Join(c.bins, "donations-plugin"), plugin)
	c.signal("w1", syscall.SIGHUP)
	testenv.Eventually(t, 20*time.Second, func() error {
		out, err := c.coordinator("status")
		if err != nil || strings.Count(out, "donations@0.1.0") != 1 || strings.Count(out, "donations@0.2.0") != 1 {
			return fmt.Errorf("after SIGHUP to w1 status shows: %v\n%s", err, out)
		}
		return nil
	})
}

// TestPluginKilledUnderLoad SIGKILLs the workers' plugin processes again
// and again during 2,000 donations: the batches they held are retried,
// and every total comes out exact.
func TestPluginKilledUnderLoad(t *testing.T) {
	// Kills this frequent are the test, not a sick plugin: keep the
	// workers from reporting themselves degraded.
	c := newCluster(t, "--audit", "--plugin-max-restarts", "1000")
	c.start("w1")
	c.start("w2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var kills atomic.Int64
	stop := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			for _, id := range []string{"w1", "w2"} {
				for _, pid := range c.pluginPids(id) {
					if syscall.Kill(pid, syscall.SIGKILL) == nil {
						kills.Add(1)
					}
				}
			}
		}
	}()
	exp := submitAll(ctx, t, c, workload.Spec{Seed: 11, Donations: 2000, Donors: 150, Campaigns: 12}, nil)
	// Keep killing while the queues drain, then let the plugins be.
	cl := c.client()
	deadline, _ := ctx.Deadline()
	testenv.Eventually(t, time.Until(deadline), func() error {
		if kills.Load() >= 20 {
			return nil
		}
		rep, err := workload.Verify(ctx, cl, exp)
		if err != nil || !rep.OK() {
			return fmt.Errorf("after %d kills the totals are not all in: %v %v", kills.Load(), rep, err)
		}
		return nil
	})
	close(stop)
	<-killed
	t.Logf("SIGKILLed %d plugin processes during the load", kills.Load())
	if kills.Load() == 0 {
		t.Fatal("no plugin process was found to kill")
	}
	if out, err := c.coordinator("dlq", "list"); err != nil || strings.TrimSpace(out) != "" {
		t.Logf("dead letters: %v\n%s", err, out)
	}
	verifyTotals(ctx, t, c, exp, "after plugin kills")
	checkAudit(t, c)
}

// TestPythonPluginCluster runs the cluster with the Python donations
// plugin: the same donations give the same totals as with the Go one.
func TestPythonPluginCluster(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf, cryptography").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with grpc, protobuf and cryptography; run make deps (apt-get install python3-grpcio python3-protobuf python3-cryptography)")
	}
	c := newCluster(t, "--audit")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(root, "examples", "python-donations", "donations_plugin.py")
	c.startPlugin("w1", plugin)
	c.startPlugin("w2", plugin)
	out, err := c.coordinator("status")
	if err != nil || strings.Count(out, "donations@0.1.0-python") != 2 {
		t.Fatalf("status: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	exp := submitAll(ctx, t, c, workload.Spec{Seed: 42, Donations: 2000, Donors: 150, Campaigns: 12}, nil)
	verifyTotals(ctx, t, c, exp, "with the Python plugin")
	checkAudit(t, c)
}
