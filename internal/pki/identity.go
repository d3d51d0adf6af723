package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// MinVersion is the oldest TLS version Corral's connections accept.
const MinVersion = tls.VersionTLS13

// Identity is a certificate with its key, and the CA every other party's
// certificate must chain to, read from files. Reload reads them again; the
// TLS configurations built from an Identity always use what was read last,
// so a renewed certificate is served from the next handshake on.
type Identity struct {
	certFile, keyFile, caFile string
	cur                       atomic.Pointer[material]
}

type material struct {
	pair  tls.Certificate // Leaf set
	roots *x509.CertPool
	role  Role
}

// LoadIdentity reads a certificate, its key and the CA file, and checks
// that the certificate is valid now under that CA and names one role.
func LoadIdentity(certFile, keyFile, caFile string) (*Identity, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("pki: a TLS identity needs a certificate, its key and the CA (--tls-cert, --tls-key, --tls-ca)")
	}
	id := &Identity{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := id.Reload(nil); err != nil {
		return nil, err
	}
	return id, nil
}

// Reload reads the files again. If they do not hold a valid identity, or
// accept (when not nil) refuses the new certificate, the one in use stays
// and the error says why.
func (id *Identity) Reload(accept func(leaf *x509.Certificate, role Role) error) error {
	m, err := loadMaterial(id.certFile, id.keyFile, id.caFile)
	if err != nil {
		return err
	}
	if accept != nil {
		if err := accept(m.pair.Leaf, m.role); err != nil {
			return err
		}
	}
	id.cur.Store(m)
	return nil
}

func loadMaterial(certFile, keyFile, caFile string) (*material, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %s with %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("pki: %s: %w", certFile, err)
		}
	}
	cas, err := readCerts(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("pki: %s is not valid under the CA in %s: %w", certFile, caFile, err)
	}
	role, err := RoleOf(pair.Leaf)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certFile, err)
	}
	return &material{pair: pair, roots: roots, role: role}, nil
}

// Leaf is the certificate in use.
func (id *Identity) Leaf() *x509.Certificate { return id.cur.Load().pair.Leaf }

// Role is the role the certificate in use names.
func (id *Identity) Role() Role { return id.cur.Load().role }

// Files are the certificate, key and CA files the identity is read from.
func (id *Identity) Files() (cert, key, ca string) { return id.certFile, id.keyFile, id.caFile }

// Describe says which certificate is in use, for logs.
func (id *Identity) Describe() string {
	l := id.Leaf()
	return fmt.Sprintf("%s (role %s, serial %x, valid until %s)", l.Subject.CommonName, id.Role(), l.SerialNumber, l.NotAfter.UTC().Format(time.RFC3339))
}

// ServerConfig is the configuration of a server that requires a client
// certificate signed by the CA. Each handshake takes the certificate and
// the CA read last (GetConfigForClient).
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := id.cur.Load()
			return &tls.Config{
				MinVersion:   MinVersion,
				Certificates: []tls.Certificate{m.pair},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.roots,
				NextProtos:   []string{"h2"}, // gRPC's ALPN, which a config returned here must repeat
			}, nil
		},
	}
}

// ClientConfig is the configuration of a client that presents the
// certificate and trusts only servers whose certificate the CA signed, as
// of now. Long-lived clients that must follow a Reload use
// ClientCredentials instead.
func (id *Identity) ClientConfig() *tls.Config {
	m := id.cur.Load()
	return &tls.Config{
		MinVersion: MinVersion,
		RootCAs:    m.roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &id.cur.Load().pair, nil
		},
	}
}
