package keys_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
)

// workerACL is the rules of the worker's user in deploy/redis/users.acl:
// its key patterns, channels and commands.
type workerACL struct {
	keys, channels []string
	commands       map[string]bool // "get", "script|load"
}

func readWorkerACL(t *testing.T) workerACL {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "redis", "users.acl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "user" || f[1] != "corral-worker" {
			continue
		}
		acl := workerACL{commands: map[string]bool{}}
		for _, r := range f[2:] {
			switch {
			case strings.HasPrefix(r, "~"):
				acl.keys = append(acl.keys, r[1:])
			case strings.HasPrefix(r, "&"):
				acl.channels = append(acl.channels, r[1:])
			case strings.HasPrefix(r, "+@"):
				t.Fatalf("users.acl grants the worker a category (%s); name its commands instead", r)
			case strings.HasPrefix(r, "+"):
				acl.commands[r[1:]] = true
			}
		}
		return acl
	}
	t.Fatal("deploy/redis/users.acl has no user corral-worker")
	return workerACL{}
}

// globMatch is Redis's pattern match for the patterns users.acl uses:
// '*' matches any run of characters, everything else itself.
func globMatch(pattern, s string) bool {
	head, rest, star := strings.Cut(pattern, "*")
	if !star {
		return pattern == s
	}
	if !strings.HasPrefix(s, head) {
		return false
	}
	s = s[len(head):]
	for i := 0; i <= len(s); i++ {
		if globMatch(rest, s[i:]) {
			return true
		}
	}
	return false
}

// builtKeys calls every key builder of v's type with sample arguments, so
// a key added later is checked without editing this test.
func builtKeys(t *testing.T, v any) []string {
	t.Helper()
	rv := reflect.ValueOf(v)
	var out []string
	for i := 0; i < rv.NumMethod(); i++ {
		m := rv.Method(i)
		var args []reflect.Value
		for j := 0; j < m.Type().NumIn(); j++ {
			switch in := m.Type().In(j); in.Kind() {
			case reflect.String:
				args = append(args, reflect.ValueOf("od/d:key{x}").Convert(in))
			case reflect.Int:
				args = append(args, reflect.ValueOf(7).Convert(in))
			default:
				t.Fatalf("%s.%s takes a %s; teach builtKeys to make one", rv.Type(), rv.Type().Method(i).Name, in)
			}
		}
		out = append(out, m.Call(args)[0].String())
	}
	return out
}

// literalKeys are the key names written out whole in this package's
// source, so a key added as a constant cannot escape the check below.
func literalKeys(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	lit := regexp.MustCompile(`"(corral:[^"{}%]*)"`)
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllSubmatch(b, -1) {
			if k := string(m[1]); !strings.HasSuffix(k, ":") {
				out = append(out, k)
			}
		}
	}
	return out
}

// TestWorkerACLCoversKeys: every key the worker builds, and the channel
// of ownership events, is one the worker's Redis user may touch, and no
// pattern is there that no key needs.
func TestWorkerACLCoversKeys(t *testing.T) {
	acl := readWorkerACL(t)
	all := append([]string{keys.Meta, keys.SchedulesChanged, keys.Lease("0123abcd"), keys.Broadcast("w1", "b-1")}, builtKeys(t, keys.For(12))...)
	all = append(all, literalKeys(t)...)
	all = append(all, builtKeys(t, keys.IDs(5))...)
	all = append(all, builtKeys(t, keys.ForHandler("mail.send"))...)
	used := map[string]bool{}
	for _, k := range all {
		ok := false
		for _, p := range acl.keys {
			if globMatch(p, k) {
				ok, used[p] = true, true
			}
		}
		if !ok {
			t.Errorf("key %q matches none of the worker's key patterns %v in deploy/redis/users.acl", k, acl.keys)
		}
	}
	for _, p := range acl.keys {
		if !used[p] {
			t.Errorf("users.acl grants key pattern %q, which no key of internal/keys needs", p)
		}
	}
	if len(acl.channels) != 1 || acl.channels[0] != lease.EventsChannel {
		t.Errorf("users.acl grants channels %v, want exactly %q", acl.channels, lease.EventsChannel)
	}
}

// TestWorkerACLCoversScripts: every command a Lua script of the worker
// runs is granted (Redis checks a script's commands against the user that
// runs it). Commands sent from Go are checked by e2e TestRedisLeastPrivilege.
func TestWorkerACLCoversScripts(t *testing.T) {
	acl := readWorkerACL(t)
	call := regexp.MustCompile(`redis\.p?call\(\s*['"]([A-Za-z]+)['"]`)
	dynamic := regexp.MustCompile(`redis\.p?call\(\s*[^'"\s]`)
	seen := map[string]bool{}
	err := filepath.WalkDir(filepath.Join("..", ".."), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "examples" || d.Name() == "testenv") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := dynamic.Find(b); m != nil {
			t.Errorf("%s: %q: a script names its command at run time; this test cannot check it against users.acl", path, m)
		}
		for _, m := range call.FindAllSubmatch(b, -1) {
			cmd := strings.ToLower(string(m[1]))
			seen[cmd] = true
			if !acl.commands[cmd] {
				t.Errorf("%s: a script runs %s, which users.acl does not grant the worker", path, strings.ToUpper(cmd))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 10 {
		t.Fatalf("found only %d script commands (%v); is the source walk broken?", len(seen), seen)
	}
	for _, c := range []string{"eval", "evalsha", "script|load"} {
		if !acl.commands[c] {
			t.Errorf("users.acl does not grant %s, which running the scripts needs", strings.ToUpper(c))
		}
	}
}
