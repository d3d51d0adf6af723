package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
)

// scriptEnv is scripts/cluster.sh's environment for one cluster with a state
// folder and ports of its own, so it runs beside any other cluster on the
// machine. Every variable the script reads is set, so none leaks in from the
// environment of the test.
type scriptEnv struct {
	root                        string // the checkout
	state                       string
	consulPort, redisPort, base int // base: CORRAL_WORKER_PORT
	workers                     int
	bin                         string   // CORRAL_BIN: worker and coordinator
	consulBin, redisBin         string   // CORRAL_CONSUL_BIN, CORRAL_REDIS_BIN
	plugins                     []string // CORRAL_PLUGINS
	path                        string   // PATH, if not the test's
}

func (e *scriptEnv) environ() []string {
	env := append(os.Environ(),
		"CORRAL_STATE="+e.state,
		"CORRAL_CONSUL_PORT="+strconv.Itoa(e.consulPort),
		"CORRAL_REDIS_PORT="+strconv.Itoa(e.redisPort),
		"CORRAL_WORKER_PORT="+strconv.Itoa(e.base),
		"CORRAL_WORKERS="+strconv.Itoa(e.workers),
		"CORRAL_WORKER_FLAGS=",
		"CORRAL_BIN="+e.bin,
		"CORRAL_CONSUL_BIN="+e.consulBin,
		"CORRAL_REDIS_BIN="+e.redisBin,
		"CORRAL_PLUGINS="+strings.Join(e.plugins, " "),
		"CORRAL_REDIS_AOF_REWRITE_MIN=",
	)
	if e.path != "" {
		env = append(env, "PATH="+e.path)
	}
	return env
}

// run runs scripts/cluster.sh with args and returns its stdout and stderr
// together.
func (e *scriptEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.root, "scripts", "cluster.sh"), args...)
	cmd.Dir = e.root
	cmd.Env = e.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("scripts/cluster.sh %s still running after 3 minutes; output:\n%s", strings.Join(args, " "), out.String())
		return "", nil
	}
}

// scriptPorts picks ports for a cluster of the script with n workers: a
// Consul HTTP port whose server and Serf ports (200, 199 and 198 below it;
// Serf on UDP too) are free, a Redis port, and a worker base whose next n
// ports are free. Each is held until all are found.
func scriptPorts(t *testing.T, n int) (consul, redis, base int) {
	t.Helper()
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	hold := func(port int, udp bool) bool {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		held = append(held, l)
		if udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return false
			}
			held = append(held, pc)
		}
		return true
	}
	anyPort := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port
	}
	for attempt := 0; consul == 0; attempt++ {
		if attempt == 200 {
			t.Fatal("no free Consul port with free server and Serf ports below it")
		}
		p := anyPort()
		if p > 1224 && hold(p-200, false) && hold(p-199, true) && hold(p-198, true) {
			consul = p
		}
	}
	redis = anyPort()
	for attempt := 0; base == 0; attempt++ {
		if attempt == 200 {
			t.Fatalf("no %d free ports in a row for the workers", n)
		}
		p := anyPort()
		ok := p+n-1 <= 65535
		for i := 1; ok && i < n; i++ {
			ok = hold(p+i, false)
		}
		if ok {
			base = p - 1
		}
	}
	return consul, redis, base
}

// pidFiles reads the pid files of a state folder: name (consul, redis,
// worker-1, ...) to pid.
func pidFiles(t *testing.T, state string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(state, "*.pid"))
	pids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = strings.TrimSpace(string(b))
	}
	return pids
}

// dumpScriptLogs logs the last lines of each log of a script cluster.
func dumpScriptLogs(t *testing.T, state string) {
	files, _ := filepath.Glob(filepath.Join(state, "logs", "*.log"))
	for _, f := range files {
		t.Logf("--- last lines of %s:\n%s", filepath.Base(f), tail(f, 40))
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprint(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// serversForScript finds redis-server and consul the way the tests do, and
// fails with what to run when one is missing.
func serversForScript(t *testing.T) (redisBin, consulBin string) {
	t.Helper()
	redisBin, err := testenv.RedisBinary()
	if err != nil {
		t.Fatal(err)
	}
	consulBin, err = testenv.ConsulBinary()
	if err != nil {
		t.Fatal(err)
	}
	return redisBin, consulBin
}
