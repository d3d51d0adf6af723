// Package e2e runs whole clusters: the real worker, coordinator and plugin
// binaries against a real redis-server and a real Consul dev agent.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"github.com/corralhq/corral/sharding"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
)

// bins holds the binaries built once for every test of the package.
var (
	binsOnce sync.Once
	binsDir  string
	binsErr  error
)

func buildBinaries(t *testing.T) string {
	t.Helper()
	binsOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			binsErr = err
			return
		}
		binsDir, binsErr = os.MkdirTemp("", "corral-e2e-bin")
		if binsErr != nil {
			return
		}
		for name, pkg := range map[string]string{
			"worker": "./cmd/worker", "coordinator": "./cmd/coordinator", "donations-plugin": "./examples/donations/plugin",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binsDir, name), pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				binsErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return binsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

// cluster is Redis, Consul and worker processes for one test.
type cluster struct {
	t       *testing.T
	bins    string
	redis   *testenv.Redis
	consul  *testenv.Consul
	dir     string
	mu      sync.Mutex
	workers map[string]*exec.Cmd
	flags   []string
	env     []string     // more environment for every worker (secrets: they stay out of the process list)
	pki     *testenv.PKI // workers serve mutual TLS with certificates of this CA, clients present an admin one; nil: plaintext
	// parts is the cluster's partition count when a test changed it
	// (coordinator reshard); 0: sharding.DefaultPartitions.
	parts atomic.Int64
}

// partitions is the cluster's partition count.
func (c *cluster) partitions() int {
	if n := c.parts.Load(); n > 0 {
		return int(n)
	}
	return sharding.DefaultPartitions
}

// newCluster starts Redis and Consul for a cluster whose workers serve
// mutual TLS, as a production cluster does: every e2e test runs with TLS
// on unless it builds its cluster otherwise.
func newCluster(t *testing.T, workerFlags ...string) *cluster {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	c := &cluster{t: t, bins: buildBinaries(t), dir: t.TempDir(), workers: map[string]*exec.Cmd{}, flags: workerFlags}
	c.redis = testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	c.consul = testenv.StartConsul(t)
	c.pki = testenv.NewPKI(t)
	t.Cleanup(c.stopAll)
	return c
}

// workerRun says how to launch one worker; empty fields take the cluster's
// Redis, Consul and the donations plugin.
type workerRun struct {
	redis, consul, plugin string
	env                   []string
	args                  []string // more worker flags, after the cluster's
}

// launch starts worker id as r says and waits until Consul lists it as
// healthy. Its log is appended to, so a restarted worker keeps one file.
func (c *cluster) launch(id string, r workerRun) {
	c.t.Helper()
	if r.redis == "" {
		r.redis = c.redis.Addr
	}
	if r.consul == "" {
		r.consul = c.consul.Addr
	}
	if r.plugin == "" {
		r.plugin = filepath.Join(c.bins, "donations-plugin")
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"--id", id, "--redis", r.redis, "--consul", r.consul, "--plugin", r.plugin}, c.flags...)
	if c.pki != nil {
		args = append(args, c.pki.WorkerFlags(c.t, id)...)
	}
	args = append(args, r.args...)
	cmd := exec.Command(filepath.Join(c.bins, "worker"), args...)
	if env := append(append([]string{}, c.env...), r.env...); len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.workers[id] = cmd
	c.mu.Unlock()
	go func() { cmd.Wait(); logf.Close() }()
	c.waitMembers(func(ids []string) bool { return contains(ids, id) }, "worker "+id+" healthy in Consul")
}

// start launches worker id with the donations plugin.
func (c *cluster) start(id string) {
	c.t.Helper()
	c.launch(id, workerRun{})
}

// signal sends sig to worker id; SIGKILL and SIGTERM forget it.
func (c *cluster) signal(id string, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	cmd := c.workers[id]
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		delete(c.workers, id)
	}
	c.mu.Unlock()
	if cmd == nil {
		c.t.Fatalf("no worker %s", id)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, id, err)
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cmd := range c.workers {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		delete(c.workers, id)
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
}

func (c *cluster) dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		c.t.Logf("--- last lines of %s:\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}

func (c *cluster) client() *client.Client {
	c.t.Helper()
	cl, err := client.New(c.clientConfig())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// clientConfig is a Go client's configuration for c, with an admin
// certificate when the workers serve TLS.
func (c *cluster) clientConfig() client.Config {
	c.t.Helper()
	cfg := client.Config{ConsulAddr: c.consul.Addr}
	if c.pki != nil {
		cfg.TLS = c.pki.ClientTLS(c.t, pki.RoleAdmin)
	}
	return cfg
}

func (c *cluster) waitMembers(ok func(ids []string) bool, what string) {
	c.t.Helper()
	cl := c.client()
	testenv.Eventually(c.t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ms, err := cl.Members(ctx)
		cancel()
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		if !ok(ids) {
			return fmt.Errorf("waiting for %s; healthy members: %v (%v)", what, ids, err)
		}
		return nil
	})
}

// coordinator runs the coordinator binary and returns its stdout.
func (c *cluster) coordinator(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bins, "coordinator"), append([]string{"--consul", c.consul.Addr}, args...)...)
	cmd.Env = append(os.Environ(), c.coordinatorEnv(pki.RoleAdmin)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("coordinator %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
