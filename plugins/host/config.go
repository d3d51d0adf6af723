package host

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
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

	// Checksums pins the SHA-256 (hex) of plugin binaries by path, as the
	// path is given in Paths. A binary whose checksum differs is not run.
	Checksums map[string]string
	// ChecksumFile is a file in sha256sum's format ("HEX  PATH" per line;
	// a relative PATH is relative to the file's folder). It is read before
	// every launch from a plugin's path (Start, Reload), so an upgrade pins
	// its new binary by rewriting the file and reloading. It wins over
	// Checksums for a path both name. A relaunch after a crash runs the
	// binary checked when it was launched, verified against its own
	// SHA-256.
	ChecksumFile string

	// MaxRestarts and RestartWindow are the restart intensity, as in an
	// OTP supervisor: a plugin restarted more than MaxRestarts times within
	// RestartWindow makes the manager Degraded until its process has stayed
	// up for RestartWindow.
	MaxRestarts   int
	RestartWindow time.Duration
	// OnRestart, if set, hears of every plugin relaunched after its
	// process died: its name and version.
	OnRestart func(plugin, version string)

	// MaxMessageBytes caps one gRPC message between worker and plugin. The
	// plugin learns it from the environment (plugins.MaxMessageEnv), so
	// both ends apply the same limit.
	MaxMessageBytes int

	// CacheDir is where the manager keeps a private copy of every binary
	// it launched (in a folder of its own, corral-plugins-PID-*, made by
	// Start, removed by Stop; Start also removes those of processes that
	// are gone, on Linux): a plugin that crashes is relaunched from that
	// copy when its path holds another file by then. Empty means the
	// system's temporary folder. It must allow executing files (not
	// mounted noexec).
	CacheDir string

	// Host, when set, is offered to every plugin through go-plugin's broker
	// for read-only queries from handlers (pluginpb.Host). A query for an
	// entity type no handler declares is refused (ErrUnknownEntity, as
	// gRPC NotFound) before it reaches Host, unless Host is an
	// EntityLister that lists it.
	Host pluginpb.HostServer

	// WithheldEnv names environment variables of the worker that the
	// plugins are not given (the worker's own credentials): a plugin that
	// logs or dumps its environment cannot leak what it never had. The
	// rest of the environment is passed on.
	WithheldEnv []string
}

// DefaultConfig returns a Config with every field but Paths set.
func DefaultConfig() Config {
	return Config{
		Logger:          slog.Default(),
		CallTimeout:     10 * time.Second,
		StartTimeout:    10 * time.Second,
		MaxRestarts:     3,
		RestartWindow:   5 * time.Second,
		MaxMessageBytes: plugins.MaxMessageBytes,
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
	if c.MaxRestarts < 0 || c.RestartWindow <= 0 {
		return fmt.Errorf("host: restart intensity must be at least 0 restarts in a positive window, got %d in %v", c.MaxRestarts, c.RestartWindow)
	}
	if c.MaxMessageBytes < 4<<20 {
		return fmt.Errorf("host: max message size must be at least 4 MiB (gRPC's default), got %d bytes", c.MaxMessageBytes)
	}
	for p, sum := range c.Checksums {
		if _, err := parseSHA256(sum); err != nil {
			return fmt.Errorf("host: plugin %s: %w", p, err)
		}
		if !contains(c.Paths, p) {
			return fmt.Errorf("host: a checksum is given for %s, which is not a plugin path", p)
		}
	}
	if c.ChecksumFile != "" {
		if _, err := readChecksumFile(c.ChecksumFile); err != nil {
			return fmt.Errorf("host: %w", err)
		}
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

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// ParsePluginFlag splits a --plugin value "PATH[@sha256=HEX]" into the
// binary's path and its pinned SHA-256 ("" when none is given).
func ParsePluginFlag(v string) (path, sha256Hex string, err error) {
	path, sum, pinned := strings.Cut(v, "@sha256=")
	if !pinned {
		return v, "", nil
	}
	if _, err := parseSHA256(sum); err != nil {
		return "", "", fmt.Errorf("--plugin %s: %w", v, err)
	}
	return path, strings.ToLower(sum), nil
}
