package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisFlags are the flags that say how to reach Redis: one address, or
// several (a Redis Cluster), AUTH and TLS.
type RedisFlags struct {
	Addrs      string
	Cluster    bool
	Username   string
	Password   string
	TLS        bool
	CA         string
	Cert, Key  string
	ServerName string
}

// Register adds the Redis flags to fs, with defaults from CORRAL_REDIS_*.
func (r *RedisFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&r.Addrs, "redis", Env("CORRAL_REDIS_ADDR", "127.0.0.1:6379"),
		"Redis address, or a comma-separated list of Redis Cluster nodes (env CORRAL_REDIS_ADDR)")
	fs.BoolVar(&r.Cluster, "redis-cluster", Env("CORRAL_REDIS_CLUSTER", "") == "true",
		"treat a single --redis address as a Redis Cluster node (implied by several addresses)")
	fs.StringVar(&r.Username, "redis-username", Env("CORRAL_REDIS_USERNAME", ""), "Redis ACL user name (env CORRAL_REDIS_USERNAME)")
	fs.StringVar(&r.Password, "redis-password", "", "Redis password (env CORRAL_REDIS_PASSWORD)")
	fs.BoolVar(&r.TLS, "redis-tls", false, "connect to Redis over TLS (implied by --redis-ca and --redis-cert)")
	fs.StringVar(&r.CA, "redis-ca", "", "PEM file of the CA that signed Redis' certificate (default: the system roots)")
	fs.StringVar(&r.Cert, "redis-cert", "", "PEM client certificate for Redis TLS (with --redis-key)")
	fs.StringVar(&r.Key, "redis-key", "", "PEM private key of --redis-cert")
	fs.StringVar(&r.ServerName, "redis-tls-server-name", "", "name to verify in Redis' certificate (default: the host of the address)")
}

// Options builds the go-redis options. The password comes from the flag or
// else CORRAL_REDIS_PASSWORD, so it need not show in the process list.
func (r *RedisFlags) Options() (*redis.UniversalOptions, error) {
	var addrs []string
	for _, a := range strings.Split(r.Addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("--redis: no address given")
	}
	pass := r.Password
	if pass == "" {
		pass = os.Getenv("CORRAL_REDIS_PASSWORD")
	}
	// DisableIdentity: no CLIENT SETINFO on each connection, so the
	// least-privilege user of deploy/redis/users.acl needs no CLIENT
	// command on any Redis version (7.0 has no SETINFO to grant).
	opts := &redis.UniversalOptions{Addrs: addrs, Username: r.Username, Password: pass,
		IsClusterMode: r.Cluster || len(addrs) > 1, DisableIdentity: true}
	if r.TLS || r.CA != "" || r.Cert != "" || r.Key != "" || r.ServerName != "" {
		cfg, err := r.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = cfg
	}
	return opts, nil
}

func (r *RedisFlags) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.ServerName}
	if r.CA != "" {
		pem, err := os.ReadFile(r.CA)
		if err != nil {
			return nil, fmt.Errorf("--redis-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--redis-ca: no PEM certificate in %s", r.CA)
		}
		cfg.RootCAs = pool
	}
	if (r.Cert == "") != (r.Key == "") {
		return nil, errors.New("--redis-cert and --redis-key go together")
	}
	if r.Cert != "" {
		pair, err := tls.LoadX509KeyPair(r.Cert, r.Key)
		if err != nil {
			return nil, fmt.Errorf("--redis-cert/--redis-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// ErrRedisAuth means Redis refused the credentials.
var ErrRedisAuth = errors.New("Redis refused the credentials")

// CheckRedis pings Redis and turns the usual start-up failures into a
// sentence saying what to fix.
func CheckRedis(ctx context.Context, rdb redis.UniversalClient, addrs string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := rdb.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return fmt.Errorf("%w at %s (%v): check --redis-password / CORRAL_REDIS_PASSWORD and --redis-username", ErrRedisAuth, addrs, err)
	case strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"):
		return fmt.Errorf("TLS handshake with Redis at %s failed (%v): check --redis-tls, --redis-ca and --redis-tls-server-name", addrs, err)
	}
	return fmt.Errorf("cannot reach Redis at %s: %w", addrs, err)
}
