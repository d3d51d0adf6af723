package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/pki"
)

func newCA(t *testing.T) (*pki.CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("test CA", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func issue(t *testing.T, ca *pki.CA, dir string, req pki.Request) (cert, key string) {
	t.Helper()
	if req.NotAfter.IsZero() {
		req.NotAfter = time.Now().Add(time.Hour)
	}
	is, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Save(dir, req.Name); err != nil {
		t.Fatal(err)
	}
	return pki.CertFile(dir, req.Name), pki.KeyFile(dir, req.Name)
}

func TestRoleURI(t *testing.T) {
	t.Parallel()
	for _, r := range pki.Roles {
		c := &x509.Certificate{URIs: []*url.URL{r.URI()}}
		got, err := pki.RoleOf(c)
		if err != nil || got != r {
			t.Errorf("%s: RoleOf(%s) = %q, %v", r, r.URI(), got, err)
		}
	}
	if got := pki.RoleAdmin.URI().String(); got != "corral://role/admin" {
		t.Errorf("admin URI %s", got)
	}
	u, _ := url.Parse("corral://role/root")
	two := &x509.Certificate{URIs: []*url.URL{pki.RoleRead.URI(), pki.RoleAdmin.URI()}}
	for name, c := range map[string]*x509.Certificate{
		"none": {}, "unknown": {URIs: []*url.URL{u}}, "two": two,
	} {
		if r, err := pki.RoleOf(c); err == nil {
			t.Errorf("%s: role %q, want an error", name, r)
		}
	}
}

func TestIssueAndLoad(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	cert, key := issue(t, ca, dir, pki.Request{Name: "w1", Role: pki.RolePeer, Hosts: []string{"127.0.0.1", "localhost", "w1"}})
	id, err := pki.LoadIdentity(cert, key, filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf := id.Leaf()
	if id.Role() != pki.RolePeer || leaf.Subject.CommonName != "w1" {
		t.Errorf("role %s, name %s", id.Role(), leaf.Subject.CommonName)
	}
	for _, h := range []string{"127.0.0.1", "localhost", "w1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("not valid for %s: %v", h, err)
		}
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v", fi.Mode(), err)
	}
	// The certificate and key in one file, as deploy/nomad renders them.
	both := filepath.Join(dir, "both.pem")
	cb, _ := os.ReadFile(cert)
	kb, _ := os.ReadFile(key)
	if err := os.WriteFile(both, append(cb, kb...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadIdentity(both, both, filepath.Join(dir, pki.CAFile)); err != nil {
		t.Errorf("certificate and key in one file: %v", err)
	}
	if _, err := pki.LoadCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("saving a second CA over the first: %v", err)
	}
}

func TestLoadRefusesBadIdentities(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	caFile := filepath.Join(dir, pki.CAFile)
	_, otherDir := newCA(t)
	cert, key := issue(t, ca, dir, pki.Request{Name: "ok", Role: pki.RoleRead})
	expCert, expKey := issue(t, ca, dir, pki.Request{Name: "old", Role: pki.RoleRead,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	_, otherKey := issue(t, ca, dir, pki.Request{Name: "other", Role: pki.RoleRead})
	for _, tc := range []struct {
		name, cert, key, ca, want string
	}{
		{"expired", expCert, expKey, caFile, "expired"},
		{"another CA", cert, key, filepath.Join(otherDir, pki.CAFile), "unknown authority"},
		{"key of another certificate", cert, otherKey, caFile, "private key does not match"},
		{"missing file", cert, key, filepath.Join(dir, "nope.pem"), "no such file"},
		{"some files only", cert, "", caFile, "--tls-key"},
	} {
		if _, err := pki.LoadIdentity(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// Reload swaps the certificate for the next handshakes, and keeps the one
// in use when the files are bad or refused.
func TestReload(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	caFile := filepath.Join(dir, pki.CAFile)
	cert, key := issue(t, ca, dir, pki.Request{Name: "w1", Role: pki.RolePeer, Hosts: []string{"127.0.0.1"}})
	server, err := pki.LoadIdentity(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	ccert, ckey := issue(t, ca, dir, pki.Request{Name: "c", Role: pki.RoleRead})
	client, err := pki.LoadIdentity(ccert, ckey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", lis.Addr().String(), client.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := served()
	if first != server.Leaf().SerialNumber.String() {
		t.Fatalf("served %s, loaded %s", first, server.Leaf().SerialNumber)
	}
	issue(t, ca, dir, pki.Request{Name: "w1", Role: pki.RolePeer, Hosts: []string{"127.0.0.1"}})
	if got := served(); got != first {
		t.Fatalf("a new certificate was served before Reload")
	}
	if err := server.Reload(nil); err != nil {
		t.Fatal(err)
	}
	second := served()
	if second == first || second != server.Leaf().SerialNumber.String() {
		t.Fatalf("after Reload served %s (first %s, loaded %s)", second, first, server.Leaf().SerialNumber)
	}
	// A garbled file, or a certificate the caller refuses, leaves the pair in use.
	if err := os.WriteFile(cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(nil); err == nil {
		t.Fatal("Reload of a garbled certificate succeeded")
	}
	issue(t, ca, dir, pki.Request{Name: "w1", Role: pki.RoleRead})
	refuse := func(_ *x509.Certificate, r pki.Role) error {
		if r != pki.RolePeer {
			return os.ErrInvalid
		}
		return nil
	}
	if err := server.Reload(refuse); err == nil {
		t.Fatal("Reload took a certificate the check refused")
	}
	if got := served(); got != second {
		t.Fatalf("after failed reloads served %s, want %s", got, second)
	}
}

func TestInitDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := pki.InitDir(dir, 0, []string{"10.0.0.5"}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, pki.CAFile)
	for _, name := range []string{"worker", "admin", "submit", "read"} {
		id, err := pki.LoadIdentity(pki.CertFile(dir, name), pki.KeyFile(dir, name), caFile)
		if err != nil {
			t.Fatal(err)
		}
		want := pki.Role(name)
		if name == "worker" {
			want = pki.RolePeer
			if err := id.Leaf().VerifyHostname("10.0.0.5"); err != nil {
				t.Error(err)
			}
		}
		if id.Role() != want {
			t.Errorf("%s: role %s, want %s", name, id.Role(), want)
		}
	}
	if _, err := pki.InitDir(dir, 0, nil); err == nil {
		t.Error("InitDir over an existing CA succeeded")
	}
}

// ClientCredentials present the certificate read last: a connection opened
// after Reload shows the new one to the server.
func TestClientCredentialsFollowReload(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	caFile := filepath.Join(dir, pki.CAFile)
	scert, skey := issue(t, ca, dir, pki.Request{Name: "s", Role: pki.RolePeer, Hosts: []string{"127.0.0.1"}})
	server, err := pki.LoadIdentity(scert, skey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	ccert, ckey := issue(t, ca, dir, pki.Request{Name: "c", Role: pki.RolePeer, Hosts: []string{"127.0.0.1"}})
	cl, err := pki.LoadIdentity(ccert, ckey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	seen := make(chan string, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				seen <- tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
			}
			c.Close()
		}
	}()
	creds := cl.ClientCredentials()
	presented := func() string {
		t.Helper()
		raw, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, _, err := creds.ClientHandshake(ctx, lis.Addr().String(), raw)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("x")) // the server judges the certificate after the client's Finished
		select {
		case s := <-seen:
			return s
		case <-ctx.Done():
			t.Fatal("the server saw no handshake")
			return ""
		}
	}
	first := presented()
	issue(t, ca, dir, pki.Request{Name: "c", Role: pki.RolePeer, Hosts: []string{"127.0.0.1"}})
	if err := cl.Reload(nil); err != nil {
		t.Fatal(err)
	}
	if second := presented(); second == first || second != cl.Leaf().SerialNumber.String() {
		t.Fatalf("after Reload the client presented %s (before %s, loaded %s)", second, first, cl.Leaf().SerialNumber)
	}
}
