package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePathOf(filepath.Join(root, "go.mod")); got != modulePath {
		t.Fatalf("RepoRoot() = %s, its go.mod declares %q", root, got)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(4, true)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: not distinct positive ports", ports)
		}
		seen[p] = true
	}
	if p := FreePort(t); p <= 0 {
		t.Fatalf("FreePort() = %d", p)
	}
}

func TestBinaryOverrideMustExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	t.Setenv("CORRAL_REDIS_BIN", missing)
	t.Setenv("CORRAL_CONSUL_BIN", missing)
	if _, err := RedisBinary(); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("RedisBinary() with a missing CORRAL_REDIS_BIN: err = %v, want one that says how to get it", err)
	}
	if _, err := ConsulBinary(); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("ConsulBinary() with a missing CORRAL_CONSUL_BIN: err = %v, want one that says how to get it", err)
	}
}

func TestRedisKillRestartKeepsAOF(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	t.Parallel()
	r := StartRedis(t, RedisOptions{AppendOnly: true, Password: "s3cret"})
	rdb := r.Client(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "corral:test", "kept", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The AOF is written before the reply, so a SIGKILL does not lose it.
	r.Kill(t)
	r.Restart(t)
	got, err := rdb.Get(ctx, "corral:test").Result()
	if err != nil || got != "kept" {
		t.Fatalf("after restart GET = %q, %v; want kept", got, err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "appendonlydir")); err != nil {
		t.Fatalf("no AOF directory in %s: %v", r.Dir, err)
	}
}

func TestTwoRedisSideBySide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	t.Parallel()
	a, b := StartRedis(t), StartRedis(t)
	if a.Addr == b.Addr {
		t.Fatalf("both servers on %s", a.Addr)
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client(t).Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("second server sees the first one's key: %d, %v", n, err)
	}
}

func TestConsulAnswersAndRestartForgets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consul")
	}
	t.Parallel()
	c := StartConsul(t)
	client := c.Client(t)
	leader, err := client.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader = %q, %v", leader, err)
	}
	register(t, client, "svc-1")

	c.Restart(t)
	services, err := client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services["svc-1"]; ok {
		t.Fatal("a restarted dev agent still knows svc-1")
	}
}

func TestConsulPersistStateSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consul")
	}
	t.Parallel()
	c := StartConsul(t, ConsulOptions{PersistState: true})
	client := c.Client(t)
	register(t, client, "svc-1")

	c.Stop(t)
	if _, err := client.Status().Leader(); err == nil {
		t.Fatal("a stopped agent answered")
	}
	c.Restart(t)
	services, err := client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services["svc-1"]; !ok {
		t.Fatalf("agent with persisted state forgot svc-1; has %v", services)
	}
}

func TestTwoConsulSideBySide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consul")
	}
	t.Parallel()
	a, b := StartConsul(t), StartConsul(t)
	if a.Addr == b.Addr {
		t.Fatalf("both agents on %s", a.Addr)
	}
	register(t, a.Client(t), "only-on-a")
	Eventually(t, 10*time.Second, func() error {
		entries, _, err := a.Client(t).Catalog().Service("corral-testenv", "", nil)
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("first agent's catalog: %d entries, %v; want the one registered", len(entries), err)
		}
		return nil
	})
	entries, _, err := b.Client(t).Catalog().Service("corral-testenv", "", nil)
	if err != nil || len(entries) != 0 {
		t.Fatalf("second agent's catalog: %d entries, %v; want none", len(entries), err)
	}
}

func register(t *testing.T, client *api.Client, id string) {
	t.Helper()
	err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "corral-testenv", Port: 1234})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

// TestRedisSnapshotRestore: a restored snapshot has what was written before
// it and nothing written after, with AOF on, and survives a restart.
func TestRedisSnapshotRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	r := StartRedis(t, RedisOptions{AppendOnly: true})
	c := r.Client(t)
	ctx := context.Background()
	c.Set(ctx, "before", "1", 0)
	snap := r.Snapshot(t)
	c.Set(ctx, "after", "1", 0)
	r.RestoreSnapshot(t, snap)
	for _, step := range []string{"restored", "restarted"} {
		if n, err := c.Exists(ctx, "before").Result(); err != nil || n != 1 {
			t.Fatalf("%s: key written before the snapshot: exists %d, %v", step, n, err)
		}
		if n, _ := c.Exists(ctx, "after").Result(); n != 0 {
			t.Fatalf("%s: key written after the snapshot survived", step)
		}
		c.Set(ctx, "later", "1", 0)
		r.Restart(t)
	}
	if n, _ := c.Exists(ctx, "later").Result(); n != 1 {
		t.Fatal("a write after the restore was not in the AOF")
	}
}

// TestRedisReplicaPromote: a replica follows its primary until promoted,
// then takes writes of its own.
func TestRedisReplicaPromote(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	p := StartRedis(t)
	ctx := context.Background()
	p.Client(t).Set(ctx, "k", "v", 0)
	r := StartRedisReplica(t, p.Addr, RedisOptions{})
	rc := r.Client(t)
	if v, _ := rc.Get(ctx, "k").Result(); v != "v" {
		t.Fatalf("replica has k = %q after its sync", v)
	}
	if err := rc.Set(ctx, "w", "1", 0).Err(); err == nil {
		t.Fatal("a replica took a write")
	}
	r.Promote(t)
	if err := rc.Set(ctx, "w", "1", 0).Err(); err != nil {
		t.Fatalf("promoted replica refused a write: %v", err)
	}
}
