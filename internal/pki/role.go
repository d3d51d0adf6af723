// Package pki issues and loads the certificates Corral's gRPC connections
// use: a private CA, worker certificates (role peer, valid for the worker's
// host names) and client certificates (roles read, submit, admin). The role
// rides in the certificate itself, as a SAN URI corral://role/NAME, so one
// mechanism authenticates and authorizes and rotates with the certificate.
package pki

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a certificate's holder may call on a worker's API.
type Role string

// The roles. read, submit and admin each include the one before; peer is
// what workers call each other with (forwarded Calls and Status).
const (
	RoleRead   Role = "read"
	RoleSubmit Role = "submit"
	RoleAdmin  Role = "admin"
	RolePeer   Role = "peer"
)

// Roles lists every role.
var Roles = []Role{RoleRead, RoleSubmit, RoleAdmin, RolePeer}

// ParseRole checks s names a role.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: use read, submit, admin or peer", s)
}

const roleScheme, roleHost = "corral", "role"

// URI is the SAN URI that grants the role: corral://role/NAME.
func (r Role) URI() *url.URL {
	return &url.URL{Scheme: roleScheme, Host: roleHost, Path: "/" + string(r)}
}

// RoleOf reads the role from a certificate's SAN URIs. A certificate names
// exactly one role; none, several or an unknown one is an error.
func RoleOf(cert *x509.Certificate) (Role, error) {
	var found []Role
	for _, u := range cert.URIs {
		if u.Scheme != roleScheme || u.Host != roleHost {
			continue
		}
		r, err := ParseRole(strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
		}
		found = append(found, r)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("certificate %q names no role (a SAN URI like corral://role/submit)", cert.Subject.CommonName)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("certificate %q names %d roles; it may name one", cert.Subject.CommonName, len(found))
}
