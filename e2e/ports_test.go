package e2e

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testenv"
)

// TestClusterScriptRefusesTakenPorts holds one port of a cluster at a time
// and runs scripts/cluster.sh up on it: the script must exit non-zero,
// name the port, its holder (this test's process, when ss is there) and
// the variable that moves it, and start nothing. Every binary it could
// start is a stand-in that leaves a mark, so a start is seen even when it
// fails.
func TestClusterScriptRefusesTakenPorts(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fakes := t.TempDir()
	marks := filepath.Join(fakes, "started")
	for _, name := range []string{"worker", "coordinator", "consul", "redis-server", "plugin"} {
		script := "#!/bin/sh\necho \"$0 $*\" >>" + marks + "\nexit 1\n"
		if err := os.WriteFile(filepath.Join(fakes, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	withSS := true
	if _, err := exec.LookPath("ss"); err != nil {
		withSS = false
	}
	noSS := pathWithout(t, "ss")

	const workers = 3
	cases := []struct {
		name     string
		port     func(consul, redis, base int) int
		udp      bool
		label    string
		variable string
		path     string
	}{
		{"consul http", func(c, r, b int) int { return c }, false, "Consul HTTP API", "CORRAL_CONSUL_PORT", ""},
		{"consul server", func(c, r, b int) int { return c - 200 }, false, "Consul server RPC", "CORRAL_CONSUL_PORT", ""},
		{"consul serf lan udp", func(c, r, b int) int { return c - 199 }, true, "Consul Serf LAN", "CORRAL_CONSUL_PORT", ""},
		{"consul serf wan", func(c, r, b int) int { return c - 198 }, false, "Consul Serf WAN", "CORRAL_CONSUL_PORT", ""},
		{"redis", func(c, r, b int) int { return r }, false, "Redis", "CORRAL_REDIS_PORT", ""},
		{"worker 3", func(c, r, b int) int { return b + 3 }, false, "worker-3's gRPC API", "CORRAL_WORKER_PORT", ""},
		{"redis without ss", func(c, r, b int) int { return r }, false, "Redis", "CORRAL_REDIS_PORT", noSS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			consul, redis, base := scriptPorts(t, workers)
			port := tc.port(consul, redis, base)
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			var l io.Closer
			if tc.udp {
				l, err = net.ListenPacket("udp", addr)
			} else {
				l, err = net.Listen("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			os.Remove(marks)

			e := &scriptEnv{root: root, state: filepath.Join(t.TempDir(), "state"), consulPort: consul, redisPort: redis,
				base: base, workers: workers, bin: fakes, consulBin: filepath.Join(fakes, "consul"),
				redisBin: filepath.Join(fakes, "redis-server"), plugins: []string{filepath.Join(fakes, "plugin")}, path: tc.path}
			out, err := e.run(t, "up")
			if err == nil {
				t.Fatalf("cluster.sh up with port %d held: exit 0\n%s", port, out)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("cluster.sh up: %v, want exit status 1", err)
			}
			name := "port " + strconv.Itoa(port)
			if tc.udp {
				name += "/udp"
			}
			wants := []string{name + " (" + tc.label, tc.variable + " moves it", "nothing started"}
			if tc.path == "" && withSS {
				wants = append(wants, "(pid "+strconv.Itoa(os.Getpid())+")")
			}
			for _, want := range wants {
				if !strings.Contains(out, want) {
					t.Errorf("the refusal does not say %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out, " moves it"); n != 1 {
				t.Errorf("the refusal names %d ports, want only the held one:\n%s", n, out)
			}
			if b, err := os.ReadFile(marks); err == nil {
				started := strings.SplitN(string(b), "\n", 6)
				t.Errorf("the refused up started:\n%s", strings.Join(started[:min(5, len(started))], "\n"))
			}
			if _, err := os.Stat(e.state); !os.IsNotExist(err) {
				t.Errorf("the refused up made its state folder (%v)", err)
			}
		})
	}
}

// pathWithout returns a PATH of symbolic links to every command of the
// test's PATH but name.
func pathWithout(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.Name() == name {
				continue
			}
			// The first of a name on PATH wins, as in a lookup.
			os.Symlink(filepath.Join(p, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	return dir
}
