package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dispatched is every command name runCommand's switch handles.
func dispatched(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "runCommand" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						out = append(out, s)
					}
				}
			}
			return true
		})
		return false
	})
	if len(out) < 10 {
		t.Fatalf("found only %d commands in runCommand: %v", len(out), out)
	}
	return out
}

func TestUsageListsEveryCommand(t *testing.T) {
	var listed []string
	for _, c := range commands() {
		listed = append(listed, c.name)
	}
	for _, name := range dispatched(t) {
		if name == "help" {
			continue
		}
		if !slices.Contains(listed, name) {
			t.Errorf("command %q is dispatched but not in the usage's Commands: list, so help and completion miss it", name)
		}
	}
	if len(globalFlags()) < 5 {
		t.Fatalf("global flags from the usage: %v", globalFlags())
	}
}

func completion(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run([]string{"completion", shell}, nil, &out, &errb); err != nil {
		t.Fatalf("completion %s: %v\n%s", shell, err, errb.String())
	}
	return out.String()
}

func TestBashCompletion(t *testing.T) {
	script := filepath.Join(t.TempDir(), "coordinator.bash")
	writeFile(t, script, completion(t, "bash"))
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	// Ask the completion function as bash would, for a few command lines.
	complete := func(words ...string) []string {
		t.Helper()
		var q []string
		for _, w := range words {
			q = append(q, strconv.Quote(w))
		}
		prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(q, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_coordinator\necho \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	got := complete("coordinator", "")
	for _, name := range dispatched(t) {
		if name != "help" && !slices.Contains(got, name) {
			t.Errorf("bash completes %v, without command %s", got, name)
		}
	}
	if got := complete("coordinator", "--timeout", "5s", "st"); !slices.Equal(got, []string{"state", "status"}) {
		t.Errorf("after a global flag with a value, st completes to %v", got)
	}
	if got := complete("coordinator", "dlq", ""); !slices.Equal(got, []string{"list", "show", "replay", "purge"}) {
		t.Errorf("dlq completes to %v", got)
	}
	if got := complete("coordinator", "status", "-o", ""); !slices.Equal(got, []string{"table", "json"}) {
		t.Errorf("-o completes to %v", got)
	}
	if got := complete("coordinator", "--ti"); !slices.Equal(got, []string{"--timeout"}) {
		t.Errorf("--ti completes to %v", got)
	}
}

func TestZshAndFishCompletion(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		s := completion(t, shell)
		for _, c := range commands() {
			if !strings.Contains(s, c.name) {
				t.Errorf("%s script lacks %s", shell, c.name)
			}
		}
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("no %s here: its script is not syntax-checked", shell)
			continue
		}
		script := filepath.Join(t.TempDir(), "coordinator."+shell)
		writeFile(t, script, s)
		if out, err := exec.Command(shell, "-n", script).CombinedOutput(); err != nil {
			t.Fatalf("%s -n: %v\n%s", shell, err, out)
		}
	}
}

func TestCompletionRefusesUnknownShell(t *testing.T) {
	var out, errb bytes.Buffer
	err := run([]string{"completion", "tcsh"}, nil, &out, &errb)
	if err == nil || exitCode(err) != 2 {
		t.Fatalf("completion tcsh: %v (exit %d)", err, exitCode(err))
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
