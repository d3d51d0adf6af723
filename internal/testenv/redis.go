package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	startTimeout = 60 * time.Second // generous: tests run servers side by side on 2 cores
	stopGrace    = 15 * time.Second
)

// RedisConfig describes a redis-server to start.
type RedisConfig struct {
	Binary     string // default: RedisBinary()
	Dir        string // its working directory: AOF files and redis.log (required)
	Port       int    // 0: a free port, retried on another if lost to a race
	AppendOnly bool   // AOF on with appendfsync everysec
	Fsync      string // appendfsync policy with AppendOnly: "everysec" (default), "always" or "no"
	Password   string // requirepass, if set; with ACLFile, the password of Username
	ReplicaOf  string // host:port of a primary to replicate, if set
	ACLFile    string // users from this file (--aclfile) instead of requirepass
	Username   string // with ACLFile: the user the harness logs in as (it needs PING, SAVE, ...)
}

// RedisServer is a redis-server process bound to 127.0.0.1 with RDB
// snapshots off. Stop, Kill and Restart are safe to call in any order. On
// Linux the server is killed when the process that started it dies.
type RedisServer struct {
	Addr    string // 127.0.0.1:port
	Port    int
	Dir     string
	LogFile string

	cfg  RedisConfig
	mu   sync.Mutex
	proc *process
}

// StartRedisServer starts redis-server and waits until it answers PING.
func StartRedisServer(ctx context.Context, cfg RedisConfig) (*RedisServer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("testenv: RedisConfig.Dir is required")
	}
	if cfg.Binary == "" {
		bin, err := RedisBinary()
		if err != nil {
			return nil, err
		}
		cfg.Binary = bin
	}
	s := &RedisServer{Dir: cfg.Dir, LogFile: filepath.Join(cfg.Dir, "redis.log"), cfg: cfg}
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			ports, err := freePorts(1, false)
			if err != nil {
				return nil, fmt.Errorf("testenv: redis: %w", err)
			}
			port = ports[0]
		}
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err := s.start(ctx)
		var exited *errExited
		if err == nil || cfg.Port != 0 || attempt == 3 || !errors.As(err, &exited) {
			return s, err
		}
	}
}

func (s *RedisServer) args() []string {
	aof := "no"
	if s.cfg.AppendOnly {
		aof = "yes"
	}
	fsync := s.cfg.Fsync
	if fsync == "" {
		fsync = "everysec"
	}
	args := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", aof, "--appendfsync", fsync,
		"--daemonize", "no", "--logfile", "",
	}
	switch {
	case s.cfg.ACLFile != "":
		args = append(args, "--aclfile", s.cfg.ACLFile)
	case s.cfg.Password != "":
		args = append(args, "--requirepass", s.cfg.Password, "--masterauth", s.cfg.Password)
	}
	if host, port, err := net.SplitHostPort(s.cfg.ReplicaOf); err == nil {
		args = append(args, "--replicaof", host, port)
	}
	return args
}

// start runs the process and waits for PING; the caller knows it is down.
func (s *RedisServer) start(ctx context.Context) error {
	p, err := startProcess(s.cfg.Binary, s.args(), s.Dir, s.LogFile)
	if err != nil {
		return fmt.Errorf("testenv: redis: %w", err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	for {
		if err := redisPing(ctx, s.Addr, s.cfg.Username, s.cfg.Password); err == nil {
			return nil
		}
		select {
		case <-p.done:
			return &errExited{name: "redis-server on " + s.Addr, err: p.err, log: logTail(s.LogFile, 20)}
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("testenv: redis-server on %s did not answer PING: %w; last lines of %s:\n%s",
				s.Addr, ctx.Err(), s.LogFile, logTail(s.LogFile, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// redisPing sends PING (after AUTH if needed) and expects PONG; a server
// still loading its AOF answers LOADING and is not ready.
func redisPing(ctx context.Context, addr, username, password string) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	send := func(args ...string) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		return strings.TrimSpace(line), err
	}
	if password != "" {
		auth := []string{"AUTH", password}
		if username != "" {
			auth = []string{"AUTH", username, password}
		}
		if line, err := send(auth...); err != nil || line != "+OK" {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	line, err := send("PING")
	if err != nil {
		return err
	}
	if line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop shuts the server down with SIGTERM (AOF flushed).
func (s *RedisServer) Stop() error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(stopGrace)
}

// Kill sends SIGKILL, as a crash would.
func (s *RedisServer) Kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Signal sends sig to the server, e.g. SIGSTOP to make a replica miss
// writes and SIGCONT to let it go on.
func (s *RedisServer) Signal(sig syscall.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return errors.New("testenv: redis-server is not running")
	}
	return p.cmd.Process.Signal(sig)
}

// Restart stops the server if it runs and starts it again on the same port
// and directory, so an AOF written before survives.
func (s *RedisServer) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(ctx)
}

// SaveRDB writes the data set to path, consistent at one moment: SAVE
// (the server blocks while it writes), then a copy of its dump.rdb.
func (s *RedisServer) SaveRDB(ctx context.Context, path string) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Username: s.cfg.Username, Password: s.cfg.Password})
	defer c.Close()
	if err := c.Save(ctx).Err(); err != nil {
		return fmt.Errorf("testenv: redis SAVE: %w", err)
	}
	return copyFile(filepath.Join(s.Dir, "dump.rdb"), path)
}

// RestoreRDB kills the server, as a crash would, replaces its data with the
// RDB file at path and starts it again on the same port. With AOF on, the
// RDB becomes the base of a new AOF (Redis 7's multi-part AOF would ignore
// a dump.rdb), so everything written since the RDB was saved is gone.
func (s *RedisServer) RestoreRDB(ctx context.Context, path string) error {
	s.Kill()
	os.Remove(filepath.Join(s.Dir, "dump.rdb"))
	dst := filepath.Join(s.Dir, "dump.rdb")
	if s.cfg.AppendOnly {
		aofDir := filepath.Join(s.Dir, "appendonlydir")
		if err := os.RemoveAll(aofDir); err != nil {
			return fmt.Errorf("testenv: restore redis: %w", err)
		}
		if err := os.Mkdir(aofDir, 0o755); err != nil {
			return fmt.Errorf("testenv: restore redis: %w", err)
		}
		const base = "appendonly.aof.1.base.rdb"
		manifest := "file " + base + " seq 1 type b\n"
		if err := os.WriteFile(filepath.Join(aofDir, "appendonly.aof.manifest"), []byte(manifest), 0o644); err != nil {
			return fmt.Errorf("testenv: restore redis: %w", err)
		}
		dst = filepath.Join(aofDir, base)
	}
	if err := copyFile(path, dst); err != nil {
		return fmt.Errorf("testenv: restore redis: %w", err)
	}
	return s.start(ctx)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// Redis is a redis-server for one test.
type Redis struct {
	Addr     string // 127.0.0.1:port
	Dir      string
	Username string // "" for the default user
	Password string
	Server   *RedisServer
}

// RedisOptions adjusts StartRedis; the zero value is fine.
type RedisOptions struct {
	AppendOnly bool   // AOF on, appendfsync everysec unless Fsync says otherwise
	Fsync      string // appendfsync: "everysec" (default), "always" (no acknowledged write lost on a crash) or "no"
	Port       int    // 0: a free port
	Password   string // requirepass
	ReplicaOf  string // host:port of a primary (or a proxy to it) to replicate
	// ACLFile loads the server's users from this file (--aclfile) instead
	// of setting requirepass; Username and Password are then the user the
	// test's own clients log in as, one with every permission.
	ACLFile  string
	Username string
}

// StartRedis starts a redis-server in a directory of t.TempDir() and stops
// it when the test ends. Its output is in Dir/redis.log and is copied to
// the test log if the test fails.
func StartRedis(t testing.TB, opts ...RedisOptions) *Redis {
	t.Helper()
	var o RedisOptions
	if len(opts) > 1 {
		t.Fatalf("testenv: StartRedis takes at most one RedisOptions")
	} else if len(opts) == 1 {
		o = opts[0]
	}
	bin, err := RedisBinary()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := StartRedisServer(ctx, RedisConfig{Binary: bin, Dir: t.TempDir(), Port: o.Port,
		AppendOnly: o.AppendOnly, Fsync: o.Fsync, Password: o.Password, ReplicaOf: o.ReplicaOf,
		ACLFile: o.ACLFile, Username: o.Username})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("testenv: stop redis: %v", err)
		}
		if t.Failed() {
			t.Logf("redis-server %s, last lines of %s:\n%s", srv.Addr, srv.LogFile, logTail(srv.LogFile, 40))
		}
	})
	return &Redis{Addr: srv.Addr, Dir: srv.Dir, Username: o.Username, Password: o.Password, Server: srv}
}

// Client returns a client of the server, closed when the test ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password})
	t.Cleanup(func() { c.Close() })
	return c
}

// Kill sends SIGKILL to the server.
func (r *Redis) Kill(t testing.TB) {
	t.Helper()
	r.Server.Kill()
}

// Restart starts the server again on the same port and directory (an AOF
// survives) and waits for PING.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := r.Server.Restart(ctx); err != nil {
		t.Fatalf("testenv: restart redis: %v", err)
	}
}

// Signal sends sig to the server (SIGSTOP freezes it, SIGCONT thaws it).
func (r *Redis) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := r.Server.Signal(sig); err != nil {
		t.Fatalf("testenv: signal redis: %v", err)
	}
}

// RedisSnapshot is a copy of a server's data set at one moment, as a
// backup would hold it.
type RedisSnapshot struct {
	Path  string    // the RDB file
	Taken time.Time // when SAVE returned
}

// Snapshot saves the data set now (SAVE blocks the server for the moment
// it writes) and keeps a copy in a directory of t.TempDir().
func (r *Redis) Snapshot(t testing.TB) *RedisSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	snap := &RedisSnapshot{Path: filepath.Join(t.TempDir(), "snapshot.rdb")}
	if err := r.Server.SaveRDB(ctx, snap.Path); err != nil {
		t.Fatalf("testenv: snapshot redis: %v", err)
	}
	snap.Taken = time.Now()
	return snap
}

// RestoreSnapshot kills the server and starts it again on the same port
// from snap, as an operator restoring a backup would: every write since the
// snapshot is lost.
func (r *Redis) RestoreSnapshot(t testing.TB, snap *RedisSnapshot) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := r.Server.RestoreRDB(ctx, snap.Path); err != nil {
		t.Fatalf("testenv: restore redis from %s: %v", snap.Path, err)
	}
}

// StartRedisReplica starts a redis-server replicating primary (host:port:
// the primary's address or a proxy's in front of it) with o's settings, and
// waits until its first sync is done.
func StartRedisReplica(t testing.TB, primary string, o RedisOptions) *Redis {
	t.Helper()
	o.ReplicaOf = primary
	r := StartRedis(t, o)
	c := r.Client(t)
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: replica %s never synced with %s: %v %s", r.Addr, primary, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Promote makes a replica a primary (REPLICAOF NO ONE), as a failover does.
func (r *Redis) Promote(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password})
	defer c.Close()
	if err := c.SlaveOf(context.Background(), "NO", "ONE").Err(); err != nil {
		t.Fatalf("testenv: promote replica %s: %v", r.Addr, err)
	}
}
