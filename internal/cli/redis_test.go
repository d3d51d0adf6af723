package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func parse(t *testing.T, args ...string) *RedisFlags {
	t.Helper()
	var r RedisFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	r.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestRedisOptions(t *testing.T) {
	t.Setenv("CORRAL_REDIS_PASSWORD", "from-env")
	o, err := parse(t, "--redis", "a:1").Options()
	if err != nil || o.IsClusterMode || len(o.Addrs) != 1 || o.Password != "from-env" || o.TLSConfig != nil {
		t.Fatalf("one address: %+v %v", o, err)
	}
	o, err = parse(t, "--redis", "a:1, b:2,c:3", "--redis-password", "flag").Options()
	if err != nil || !o.IsClusterMode || len(o.Addrs) != 3 || o.Addrs[1] != "b:2" || o.Password != "flag" {
		t.Fatalf("three addresses: %+v %v", o, err)
	}
	if o, err = parse(t, "--redis", "a:1", "--redis-cluster").Options(); err != nil || !o.IsClusterMode {
		t.Fatalf("--redis-cluster: %+v %v", o, err)
	}
	if _, err := parse(t, "--redis", " , ").Options(); err == nil {
		t.Fatal("no address accepted")
	}
	if _, err := parse(t, "--redis-cert", "x.pem").Options(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("cert without key: %v", err)
	}
	if _, err := parse(t, "--redis-ca", filepath.Join(t.TempDir(), "none.pem")).Options(); err == nil {
		t.Fatal("missing CA file accepted")
	}
}

// TestRedisTLSAndAuth runs a real redis-server that only speaks TLS,
// demands client certificates and a password, and checks what each
// mistake says.
func TestRedisTLSAndAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	newCert(t, dir, "other-ca", nil, nil)

	bin, err := testenv.RedisBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	f := func(n string) string { return filepath.Join(dir, n) }
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", f("server.pem"), "--tls-key-file", f("server-key.pem"),
		"--tls-ca-cert-file", f("ca.pem"), "--tls-auth-clients", "yes",
		"--requirepass", "s3cret", "--save", "", "--dir", dir)
	logf, _ := os.Create(f("redis.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })

	check := func(args ...string) error {
		t.Helper()
		o, err := parse(t, append([]string{"--redis", addr}, args...)...).Options()
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewUniversalClient(o)
		defer rdb.Close()
		return CheckRedis(context.Background(), rdb, addr)
	}
	good := []string{"--redis-ca", f("ca.pem"), "--redis-cert", f("client.pem"), "--redis-key", f("client-key.pem"), "--redis-password", "s3cret"}
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := check(good...); err != nil {
			b, _ := os.ReadFile(f("redis.log"))
			return fmt.Errorf("TLS redis does not answer: %v\n%s", err, b)
		}
		return nil
	})
	if err := check(append(good[:len(good)-1:len(good)-1], "wrong")...); !errors.Is(err, ErrRedisAuth) {
		t.Errorf("wrong password: %v, want ErrRedisAuth", err)
	}
	if err := check("--redis-ca", f("other-ca.pem"), "--redis-cert", f("client.pem"), "--redis-key", f("client-key.pem"), "--redis-password", "s3cret"); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("server certificate from another CA: %v, want a TLS handshake error", err)
	}
}

// newCert writes NAME.pem and NAME-key.pem: a CA when parent is nil, else
// a certificate for 127.0.0.1 signed by parent.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}
