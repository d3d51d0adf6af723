package host

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrChecksumMismatch: a plugin binary's SHA-256 is not the pinned one, so
// it was not launched.
var ErrChecksumMismatch = errors.New("plugin binary checksum mismatch")

func parseSHA256(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not 64 hex digits", s)
	}
	return b, nil
}

// readChecksumFile parses sha256sum output: "HEX  PATH" or "HEX *PATH" per
// line, blank lines and # comments ignored. Paths come back absolute.
func readChecksumFile(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read checksum file: %w", err)
	}
	defer f.Close()
	dir := filepath.Dir(path)
	out := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, file, ok := strings.Cut(line, " ")
		file = strings.TrimPrefix(strings.TrimSpace(file), "*")
		if !ok || file == "" {
			return nil, fmt.Errorf("checksum file %s line %d: want \"SHA256  PATH\", got %q", path, n, line)
		}
		b, err := parseSHA256(sum)
		if err != nil {
			return nil, fmt.Errorf("checksum file %s line %d: %w", path, n, err)
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		out[filepath.Clean(file)] = b
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read checksum file %s: %w", path, err)
	}
	return out, nil
}

// pinnedChecksum is the SHA-256 the binary at abs must have, nil when none
// is configured. The checksum file is read anew each time.
func (m *Manager) pinnedChecksum(abs string) ([]byte, error) {
	if m.cfg.ChecksumFile != "" {
		sums, err := readChecksumFile(m.cfg.ChecksumFile)
		if err != nil {
			return nil, err
		}
		if b, ok := sums[abs]; ok {
			return b, nil
		}
	}
	if hexSum, ok := m.checksums[abs]; ok {
		return parseSHA256(hexSum)
	}
	return nil, nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// pluginEnv is env without the variables named in withheld.
func pluginEnv(env, withheld []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(withheld, name) {
			out = append(out, kv)
		}
	}
	return out
}
