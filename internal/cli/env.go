// Package cli holds what both binaries share: defaults read from the
// environment, logger set-up, and a repeatable string flag.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Env returns the environment variable name's value, or def.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// DefaultConsulAddr is CORRAL_CONSUL_ADDR, else the local agent.
func DefaultConsulAddr() string { return Env("CORRAL_CONSUL_ADDR", "127.0.0.1:8500") }

// NewLogger builds a slog logger writing text or JSON at level.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: use text or json", format)
}

// Strings is a flag that may be given several times.
type Strings []string

func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set appends one value.
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// Attempts says "1 attempt", "2 attempts".
func Attempts(n int32) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}
