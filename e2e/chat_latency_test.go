package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/internal/testenv"
)

// TestChatLatency runs examples/chat/latency against three workers with
// the chat plugin (plaintext, as the command dials) and logs what it
// measured: publish→delivery and submit --wait latencies, and what a
// topic costs Redis. It asserts nothing of the timings.
//
//	go test ./e2e -run TestChatLatency -v
func TestChatLatency(t *testing.T) {
	c := newCluster(t)
	c.pki = nil
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for name, pkg := range map[string]string{"chat-plugin": "./examples/chat/plugin", "chat-latency": "./examples/chat/latency"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(c.bins, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		c.launch(id, workerRun{plugin: filepath.Join(c.bins, "chat-plugin")})
	}
	out, err := exec.Command(filepath.Join(c.bins, "chat-latency"), "--consul", c.consul.Addr, "--redis", c.redis.Addr).CombinedOutput()
	t.Logf("chat-latency:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
}
