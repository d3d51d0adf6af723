package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of three masters (no replicas), each a
// redis-server bound to 127.0.0.1, for proving that every command of the
// job path stays within one hash slot.
type RedisCluster struct {
	Addrs []string // the masters' host:port
	Dir   string
	opts  RedisClusterOptions
	procs []*process
	logs  []string
}

// RedisClusterOptions adjusts StartRedisCluster; the zero value is fine.
type RedisClusterOptions struct {
	// ACLFile loads every node's users from this file (--aclfile);
	// Username and Password are then the user the harness and its clients
	// log in as, one with every permission.
	ACLFile            string
	Username, Password string
}

// StartRedisCluster starts three cluster-enabled redis-servers on free
// ports, joins them with `redis-cli --cluster create`, waits until every
// node reports cluster_state:ok, and stops them when the test ends.
func StartRedisCluster(t testing.TB, opts ...RedisClusterOptions) *RedisCluster {
	t.Helper()
	var o RedisClusterOptions
	if len(opts) > 1 {
		t.Fatalf("testenv: StartRedisCluster takes at most one RedisClusterOptions")
	} else if len(opts) == 1 {
		o = opts[0]
	}
	bin, err := RedisBinary()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cli, err := redisCLI(bin)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// Data ports and cluster-bus ports: the default bus port (port+10000)
	// may not exist for a high free port, so it is given explicitly.
	ports, err := freePorts(6, false)
	if err != nil {
		t.Fatalf("testenv: redis cluster: %v", err)
	}
	c := &RedisCluster{Dir: t.TempDir(), opts: o}
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.stop(stopGrace)
		}
		if t.Failed() {
			for _, l := range c.logs {
				t.Logf("last lines of %s:\n%s", l, logTail(l, 30))
			}
		}
	})
	for i := 0; i < 3; i++ {
		dir := filepath.Join(c.Dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		port, bus := ports[i], ports[3+i]
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "2000"}
		if o.ACLFile != "" {
			args = append(args, "--aclfile", o.ACLFile)
		}
		log := filepath.Join(dir, "redis.log")
		p, err := startProcess(bin, args, dir, log)
		if err != nil {
			t.Fatalf("testenv: redis cluster node: %v", err)
		}
		c.procs, c.logs, c.Addrs = append(c.procs, p), append(c.logs, log), append(c.Addrs, addr)
		for redisPing(ctx, addr, o.Username, o.Password) != nil {
			if p.exited() || ctx.Err() != nil {
				t.Fatalf("testenv: redis cluster node %s did not start; last lines of %s:\n%s", addr, log, logTail(log, 20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var auth []string
	if o.Password != "" {
		auth = []string{"--user", o.Username, "--pass", o.Password, "--no-auth-warning"}
	}
	create := exec.CommandContext(ctx, cli, append(append(append(auth, "--cluster", "create"), c.Addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range c.Addrs {
		rc := redis.NewClient(&redis.Options{Addr: addr, Username: o.Username, Password: o.Password})
		for {
			info, _ := rc.ClusterInfo(ctx).Result()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				rc.Close()
				t.Fatalf("testenv: redis cluster node %s never reported cluster_state:ok:\n%s", addr, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rc.Close()
	}
	return c
}

// Client returns a cluster client of every master, closed when the test
// ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, Username: c.opts.Username, Password: c.opts.Password})
	t.Cleanup(func() { rc.Close() })
	return rc
}

// redisCLI finds redis-cli next to redis-server, else on PATH.
func redisCLI(server string) (string, error) {
	if p := filepath.Join(filepath.Dir(server), "redis-cli"); executable(p) == nil {
		return p, nil
	}
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", fmt.Errorf("redis-cli not found next to %s nor on PATH; run `make deps`", server)
	}
	return p, nil
}
