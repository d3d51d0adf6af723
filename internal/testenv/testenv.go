// Package testenv starts real redis-server and Consul agent processes on
// free ports, for tests and for tools that need a throwaway server.
//
// The test helpers (StartRedis, StartConsul) fail the test when a binary is
// missing; they never skip. RedisServer and ConsulAgent are the same
// processes without a testing.TB, for use outside tests.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const modulePath = "github.com/corralhq/corral"

// RepoRoot walks up from the working directory to the directory whose
// go.mod declares the Corral module (nested modules such as tools/consul
// are passed by).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: working directory: %w", err)
	}
	for {
		if modulePathOf(filepath.Join(dir, "go.mod")) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testenv: no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// modulePathOf returns the module path declared in a go.mod, or "".
func modulePathOf(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// RedisBinary finds redis-server: $CORRAL_REDIS_BIN, then PATH.
func RedisBinary() (string, error) {
	const hint = "run `make deps` (it runs apt-get install -y redis-server) or set CORRAL_REDIS_BIN"
	if p := os.Getenv("CORRAL_REDIS_BIN"); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("CORRAL_REDIS_BIN=%s: %v: %s", p, err, hint)
		}
		return p, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found on PATH: %s", hint)
	}
	return p, nil
}

// ConsulBinary finds consul: $CORRAL_CONSUL_BIN, then <repo>/bin/consul,
// then PATH.
func ConsulBinary() (string, error) {
	const hint = "run `make deps` (builds the pinned Consul into bin/consul from tools/consul) or set CORRAL_CONSUL_BIN"
	if p := os.Getenv("CORRAL_CONSUL_BIN"); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("CORRAL_CONSUL_BIN=%s: %v: %s", p, err, hint)
		}
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", "consul")
		if executable(p) == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("consul")
	if err != nil {
		return "", fmt.Errorf("consul not found in bin/ or on PATH: %s", hint)
	}
	return p, nil
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
