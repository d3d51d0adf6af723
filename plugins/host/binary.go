package host

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// binary is a plugin binary as it was launched: a private copy of the file
// that was at the plugin's path, and its SHA-256. A relaunch after a crash
// runs this binary, not whatever the path holds by then.
type binary struct {
	copy   string // in the manager's cache dir
	sum    []byte
	pinned bool // a pinned checksum matched it at launch
}

func (b *binary) hex() string {
	if b == nil {
		return ""
	}
	return hex.EncodeToString(b.sum)
}

// refusal is a file found at a plugin's path that does not run: a reload
// to it failed.
type refusal struct {
	sum    []byte
	reason string
}

// cacheDirPrefix starts the name of a manager's cache folder, followed by
// the worker's process id and a dash.
const cacheDirPrefix = "corral-plugins-"

// makeCacheDir creates the manager's private folder for copies of the
// binaries it launched, under Config.CacheDir (default: the system's
// temporary folder). Stop removes it; the folders of workers that died
// without stopping are removed here, on Linux.
func (m *Manager) makeCacheDir() error {
	base := m.cfg.CacheDir
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("host: plugin cache dir: %w", err)
	}
	removeStaleCacheDirs(base)
	dir, err := os.MkdirTemp(base, fmt.Sprintf("%s%d-", cacheDirPrefix, os.Getpid()))
	if err != nil {
		return fmt.Errorf("host: plugin cache dir: %w", err)
	}
	m.cacheDir = dir
	return nil
}

// removeStaleCacheDirs removes the cache folders in base whose worker
// process is gone. A folder whose process id was reused is kept until that
// process is gone too.
func removeStaleCacheDirs(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, cacheDirPrefix+"*-*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), cacheDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() || !processGone(pid) {
			continue
		}
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			_ = os.RemoveAll(d)
		}
	}
}

// snapshot copies the file at the plugin's path into the cache dir,
// hashing it on the way, and returns the file's identity as it was read.
// The process is then started from the path only if the path still holds
// this file (see exec), so the copy is what was launched. A file hashed
// before and unchanged since (same identity, size and modification time)
// whose copy is there is neither read nor copied again, so reloading an
// unchanged plugin costs no I/O.
func (s *supervisor) snapshot() (*binary, os.FileInfo, error) {
	if fi, err := os.Stat(s.path); err == nil {
		s.sumMu.Lock()
		sum := s.sum
		hit := s.sumOf != nil && sameFile(s.sumOf, fi)
		s.sumMu.Unlock()
		if hit {
			dst := s.copyName(sum)
			if st, err := os.Lstat(dst); err == nil && st.Mode().IsRegular() && st.Size() == fi.Size() {
				return &binary{copy: dst, sum: sum}, fi, nil
			}
		}
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.CreateTemp(s.m.cacheDir, ".copy-*")
	if err != nil {
		return nil, nil, fmt.Errorf("copy to the plugin cache: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), f)
	if err == nil {
		err = tmp.Chmod(0o700)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	sum := h.Sum(nil)
	dst := s.copyName(sum)
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return nil, nil, fmt.Errorf("copy to the plugin cache: %w", err)
	}
	s.rememberSum(fi, sum)
	return &binary{copy: dst, sum: sum}, fi, nil
}

// copyName is where the copy of the plugin's binary with this SHA-256
// goes: named by plugin and content, so a reload to the same file reuses
// it.
func (s *supervisor) copyName(sum []byte) string {
	return filepath.Join(s.m.cacheDir, fmt.Sprintf("%d-%s-%x", s.index, filepath.Base(s.path), sum[:8]))
}

// pathSum is the SHA-256 of the file now at the plugin's path, hashed again
// only when the file's identity, size or modification time changed, and
// the identity it goes with.
func (s *supervisor) pathSum() ([]byte, os.FileInfo, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, nil, err
	}
	s.sumMu.Lock()
	defer s.sumMu.Unlock()
	if s.sumOf != nil && sameFile(s.sumOf, fi) {
		return s.sum, s.sumOf, nil
	}
	sum, err := fileSHA256(s.path)
	if err != nil {
		return nil, nil, err
	}
	// fi is from before the hash: a file changed meanwhile has another
	// identity or time by now, so the next call hashes it again.
	s.sumOf, s.sum = fi, sum
	return sum, fi, nil
}

func (s *supervisor) rememberSum(fi os.FileInfo, sum []byte) {
	s.sumMu.Lock()
	defer s.sumMu.Unlock()
	s.sumOf, s.sum = fi, sum
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// discard removes the copy of a binary that did not become the running one.
// Callers hold s.mu.
func (s *supervisor) discard(b *binary) {
	if b == nil || (s.good != nil && s.good.copy == b.copy) {
		return
	}
	_ = os.Remove(b.copy)
}

// refuse records that the file at the path, b, failed to replace the
// running binary, and why; b's copy is removed.
func (s *supervisor) refuse(b *binary, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b == nil || (s.good != nil && bytes.Equal(b.sum, s.good.sum)) {
		return // the running file itself: nothing newer was refused
	}
	s.refused = &refusal{sum: b.sum, reason: reason}
	s.discard(b)
}

// PluginStatus is what runs of one plugin, and whether the file at its
// path is something else.
type PluginStatus struct {
	Name    string
	Version string
	Path    string
	// SHA256 is the hex SHA-256 of the binary the plugin's process runs;
	// relaunches after a crash run the same binary.
	SHA256 string
	// Refused says, in one short line, why the file now at Path is not
	// running ("" when it is the running one): a reload to it failed, it
	// changed and was not reloaded yet, or it cannot be read.
	Refused string
	// RefusedSHA256 is the hex SHA-256 of that file, when it could be read.
	RefusedSHA256 string
}

// PluginStatus reports every plugin's running binary and the file at its
// path when that differs, sorted by plugin name. The file is hashed again
// only when it changed.
func (m *Manager) PluginStatus() []PluginStatus {
	m.mu.RLock()
	sups := m.sups
	m.mu.RUnlock()
	out := make([]PluginStatus, 0, len(sups))
	for _, s := range sups {
		s.mu.Lock()
		desc, good, refused := s.desc, s.good, s.refused
		s.mu.Unlock()
		st := PluginStatus{Name: desc.GetName(), Version: desc.GetVersion(), Path: s.path, SHA256: good.hex()}
		sum, _, err := s.pathSum()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			st.Refused = "the file is gone"
		case err != nil:
			st.Refused = "cannot read the file: " + err.Error()
		case good != nil && bytes.Equal(sum, good.sum):
		case refused != nil && bytes.Equal(sum, refused.sum):
			st.Refused, st.RefusedSHA256 = refused.reason, hex.EncodeToString(sum)
		default:
			st.Refused, st.RefusedSHA256 = "not loaded: it changed after the launch (crashes relaunch the running binary; a reload runs the new file)", hex.EncodeToString(sum)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
