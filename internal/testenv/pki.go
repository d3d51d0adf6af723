package testenv

import (
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/pki"
)

// PKI is a throwaway CA for one test, its files in the test's temporary
// directory, and the certificates issued from it.
type PKI struct {
	Dir string
	CA  *pki.CA
}

// NewPKI makes a CA valid for a day.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("corral test CA", time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return &PKI{Dir: dir, CA: ca}
}

// CAFile is the CA certificate's path: what --tls-ca names.
func (p *PKI) CAFile() string { return filepath.Join(p.Dir, pki.CAFile) }

// Issue writes a certificate for req (valid for an hour unless it says
// otherwise) as NAME.pem and NAME-key.pem and returns their paths.
func (p *PKI) Issue(t testing.TB, req pki.Request) (cert, key string) {
	t.Helper()
	if req.NotAfter.IsZero() {
		req.NotAfter = time.Now().Add(time.Hour)
	}
	is, err := p.CA.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Save(p.Dir, req.Name); err != nil {
		t.Fatal(err)
	}
	return pki.CertFile(p.Dir, req.Name), pki.KeyFile(p.Dir, req.Name)
}

// WorkerFlags issues worker id a peer certificate for the local hosts and
// returns the worker flags that use it.
func (p *PKI) WorkerFlags(t testing.TB, id string) []string {
	t.Helper()
	cert, key := p.Issue(t, pki.Request{Name: id, Role: pki.RolePeer, Hosts: append(append([]string{}, pki.LocalHosts...), id)})
	return []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", p.CAFile()}
}

// ClientFiles issues a client certificate named after its role (once per
// role) and returns its files and the CA's.
func (p *PKI) ClientFiles(t testing.TB, role pki.Role) (cert, key, ca string) {
	t.Helper()
	cert, key = pki.CertFile(p.Dir, string(role)), pki.KeyFile(p.Dir, string(role))
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		cert, key = p.Issue(t, pki.Request{Name: string(role), Role: role})
	}
	return cert, key, p.CAFile()
}

// ClientTLS is a client's TLS configuration with a certificate of role.
func (p *PKI) ClientTLS(t testing.TB, role pki.Role) *tls.Config {
	t.Helper()
	id, err := pki.LoadIdentity(p.ClientFiles(t, role))
	if err != nil {
		t.Fatal(err)
	}
	return id.ClientConfig()
}
