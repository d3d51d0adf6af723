package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

// What a plugin process's stderr tail keeps: its last lines, each cut to
// tailBytes, and no more than tailBytes in all.
const (
	tailLines = 10
	tailBytes = 2048
)

// stderrTail keeps the last lines a plugin process wrote to stderr, before
// the handshake (go-plugin's ClientConfig.Stderr) and after it (the synced
// stderr), so a failed launch or a crash can say what the plugin said.
type stderrTail struct {
	mu    sync.Mutex
	lines []string // oldest first, at most tailLines
	total int      // lines seen, kept or not
}

// writer returns a writer that adds each complete line written to it. Each
// stream needs its own, so that their partial lines do not mix.
func (t *stderrTail) writer() *lineWriter {
	return &lineWriter{max: tailBytes, emit: t.add}
}

func (t *stderrTail) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, string(line))
}

// last returns the kept lines, oldest first, readable (hclog's JSON lines
// as "LEVEL message key=value"), and within tailBytes, dropping the oldest.
// It also says how many lines were written in all.
func (t *stderrTail) last() (lines []string, total int) {
	if t == nil {
		return nil, 0
	}
	t.mu.Lock()
	raw := append([]string(nil), t.lines...)
	total = t.total
	t.mu.Unlock()
	size := 0
	for i := len(raw) - 1; i >= 0; i-- {
		l := readableLine(raw[i])
		if size += len(l) + 1; size > tailBytes && len(lines) > 0 {
			break
		}
		lines = append(lines, l)
	}
	for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	return lines, total
}

// readableLine turns a JSON log line with hclog's keys (what plugins are
// asked to write) into "LEVEL message key=value ..."; other lines are kept.
func readableLine(line string) string {
	if !strings.HasPrefix(line, "{") {
		return line
	}
	var fields map[string]any
	if json.Unmarshal([]byte(line), &fields) != nil {
		return line
	}
	msg, ok := fields["@message"].(string)
	if !ok {
		return line
	}
	level, _ := fields["@level"].(string)
	var b strings.Builder
	if level != "" {
		b.WriteString(strings.ToUpper(level) + " ")
	}
	b.WriteString(msg)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if !strings.HasPrefix(k, "@") && k != "timestamp" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, fields[k])
	}
	return b.String()
}

// exitOf says how a process that has ended ended ("exit status 3",
// "signal: segmentation fault"), or "" when it has not, or was SIGKILLed:
// a process that fails to launch is killed by the host, so a SIGKILL says
// nothing about the plugin.
func exitOf(cmd *exec.Cmd) string {
	ps := cmd.ProcessState
	if ps == nil {
		return ""
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return ""
	}
	return ps.String()
}

// LaunchError is a plugin process that did not come up: it exited before
// the handshake, broke it, or failed Describe. It carries how the process
// ended and the last lines it wrote to stderr, which is usually where a
// plugin says what it is missing.
type LaunchError struct {
	Path string
	// Err is what went wrong as the host saw it.
	Err error
	// Exit is how the process ended ("exit status 3"), "" when it was
	// still running, or killed by the host.
	Exit string
	// Stderr holds the process's last stderr lines, oldest first: at most
	// 10 lines and 2 KiB.
	Stderr []string
	// StderrLines counts the lines it wrote to stderr in all.
	StderrLines int
}

// noHandshake is how go-plugin says the plugin closed its stdout (exited,
// usually) without printing the handshake line. The rest of its message
// guesses at causes (architecture, libraries, permissions) that a plugin
// which ran and exited does not have.
func noHandshake(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Failed to read any lines from plugin's stdout") ||
		strings.Contains(msg, "plugin exited before we could connect")
}

func (e *LaunchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "launch plugin %s: %s", e.Path, e.what())
	if e.Exit != "" {
		fmt.Fprintf(&b, " (%s)", e.Exit)
	}
	switch n := len(e.Stderr); {
	case n == 0 && e.Exit != "":
		b.WriteString("; it wrote nothing to stderr")
	case n == 1 && e.StderrLines == 1:
		b.WriteString("; stderr: " + e.Stderr[0])
	case n > 0:
		if e.StderrLines > n {
			fmt.Fprintf(&b, "; last %d of %d stderr lines:", n, e.StderrLines)
		} else {
			b.WriteString("; stderr:")
		}
		for _, l := range e.Stderr {
			b.WriteString("\n  " + l)
		}
	}
	return b.String()
}

// what is the failure itself: go-plugin's message without its guesses
// when the process's own words say more.
func (e *LaunchError) what() string {
	if e.Exit != "" && noHandshake(e.Err) {
		return "the plugin exited before the handshake"
	}
	msg := e.Err.Error()
	if e.Exit != "" || len(e.Stderr) > 0 {
		msg, _, _ = strings.Cut(msg, "\n")
	}
	return strings.TrimSpace(msg)
}

func (e *LaunchError) Unwrap() error { return e.Err }

// shortReason is err in one line of at most 200 bytes, for a status field:
// a LaunchError's exit and its last stderr line, a checksum mismatch, or
// the error's first line.
func shortReason(err error) string {
	var s string
	var le *LaunchError
	switch {
	case errors.Is(err, ErrChecksumMismatch) && strings.Contains(err.Error(), "is pinned"):
		s = "its sha256 is not the pinned one"
	case errors.Is(err, ErrChecksumMismatch):
		s = "it changed while it was being launched"
	case errors.As(err, &le):
		s = le.what()
		if le.Exit != "" {
			s += " (" + le.Exit + ")"
		}
		if n := len(le.Stderr); n > 0 {
			s += ": " + le.Stderr[n-1]
		}
	default:
		s, _, _ = strings.Cut(err.Error(), "\n")
	}
	if len(s) > 200 {
		cut := 197
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
