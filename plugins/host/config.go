package host

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Config configures a Manager.
type Config struct {
	// Paths are the plugin binaries to run, one process each.
	Paths []string
	// Logger receives the manager's logs and the plugins' stderr, with the
	// attribute plugin=<name>. Nil means slog.Default().
	Logger *slog.Logger
	// CallTimeout is the deadline of a Handle call whose handlers declare
	// no timeout of their own.
	CallTimeout time.Duration
	// StartTimeout bounds launching a plugin and its Describe call.
	StartTimeout time.Duration
}

// DefaultConfig returns a Config with every field but Paths set.
func DefaultConfig() Config {
	return Config{
		Logger:       slog.Default(),
		CallTimeout:  10 * time.Second,
		StartTimeout: 10 * time.Second,
	}
}

// Validate checks that every plugin path names an executable file, so a
// typo fails at startup with the path in the message.
func (c Config) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("host: no plugin paths: give at least one plugin binary")
	}
	if c.CallTimeout <= 0 {
		return fmt.Errorf("host: call timeout must be positive, got %v", c.CallTimeout)
	}
	if c.StartTimeout <= 0 {
		return fmt.Errorf("host: start timeout must be positive, got %v", c.StartTimeout)
	}
	seen := make(map[string]string, len(c.Paths))
	for _, p := range c.Paths {
		if p == "" {
			return errors.New("host: empty plugin path")
		}
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("host: plugin %s does not exist", p)
		case err != nil:
			return fmt.Errorf("host: plugin %s: %w", p, err)
		case st.IsDir():
			return fmt.Errorf("host: plugin %s is a directory, not an executable", p)
		case st.Mode().Perm()&0o111 == 0:
			return fmt.Errorf("host: plugin %s is not executable (mode %v)", p, st.Mode().Perm())
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("host: plugin %s: %w", p, err)
		}
		if first, dup := seen[abs]; dup {
			return fmt.Errorf("host: plugin %s is listed twice (also as %s)", p, first)
		}
		seen[abs] = p
	}
	return nil
}
