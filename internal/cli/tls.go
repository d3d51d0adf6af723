package cli

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/pki"
)

// TLSFlags say which certificate a binary presents and which CA it trusts
// on the workers' gRPC API: --tls-cert, --tls-key, --tls-ca (env
// CORRAL_TLS_CERT, CORRAL_TLS_KEY, CORRAL_TLS_CA), and --insecure.
type TLSFlags struct {
	Cert, Key, CA string
	Insecure      bool
}

// Register adds the flags to fs; insecure is what --insecure means to
// this binary.
func (f *TLSFlags) Register(fs *flag.FlagSet, insecure string) {
	fs.StringVar(&f.Cert, "tls-cert", os.Getenv("CORRAL_TLS_CERT"), "PEM certificate presented on the gRPC API; its SAN URI corral://role/NAME is its role (env CORRAL_TLS_CERT)")
	fs.StringVar(&f.Key, "tls-key", os.Getenv("CORRAL_TLS_KEY"), "PEM private key of --tls-cert (env CORRAL_TLS_KEY)")
	fs.StringVar(&f.CA, "tls-ca", os.Getenv("CORRAL_TLS_CA"), "PEM file of the cluster's CA: the other side's certificate must chain to it (env CORRAL_TLS_CA)")
	fs.BoolVar(&f.Insecure, "insecure", false, insecure)
}

// Given reports whether any of the three files was named.
func (f *TLSFlags) Given() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Identity loads the named files; nil when none was named. Naming some of
// them only is an error.
func (f *TLSFlags) Identity() (*pki.Identity, error) {
	if !f.Given() {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca go together (or CORRAL_TLS_CERT, CORRAL_TLS_KEY, CORRAL_TLS_CA)")
	}
	if f.Insecure {
		return nil, errors.New("--insecure and --tls-cert contradict each other: give one")
	}
	return pki.LoadIdentity(f.Cert, f.Key, f.CA)
}

// LocalTLSDir is where scripts/cluster.sh keeps the local cluster's
// certificates: $CORRAL_STATE/tls, or .corral/tls in the working
// directory.
func LocalTLSDir() string {
	if s := os.Getenv("CORRAL_STATE"); s != "" {
		return filepath.Join(s, "tls")
	}
	return filepath.Join(".corral", "tls")
}

// ClientConfig is the TLS configuration of a client of the workers: from
// the flags (or environment); else, unless --insecure or CORRAL_TLS=off,
// the admin certificate of the local cluster in LocalTLSDir if it is
// there; else nil (plaintext). from says where it came from, for messages.
func (f *TLSFlags) ClientConfig() (cfg *tls.Config, from string, err error) {
	if f.Insecure || os.Getenv("CORRAL_TLS") == "off" {
		if f.Given() {
			return nil, "", errors.New("--insecure (or CORRAL_TLS=off) and --tls-cert contradict each other: give one")
		}
		return nil, "", nil
	}
	if f.Given() {
		id, err := f.Identity()
		if err != nil {
			return nil, "", err
		}
		return id.ClientConfig(), fmt.Sprintf("%s (role %s)", f.Cert, id.Role()), nil
	}
	dir := LocalTLSDir()
	name := string(pki.RoleAdmin)
	cert, key, ca := pki.CertFile(dir, name), pki.KeyFile(dir, name), filepath.Join(dir, pki.CAFile)
	for _, p := range []string{cert, key, ca} {
		if _, err := os.Stat(p); err != nil {
			return nil, "", nil
		}
	}
	id, err := pki.LoadIdentity(cert, key, ca)
	if err != nil {
		return nil, "", fmt.Errorf("the local cluster's certificates in %s: %w", dir, err)
	}
	return id.ClientConfig(), fmt.Sprintf("%s (role %s, the local cluster's)", cert, id.Role()), nil
}
