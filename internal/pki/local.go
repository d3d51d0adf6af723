package pki

import (
	"fmt"
	"time"
)

// Validity of what InitDir writes, unless the caller says otherwise.
const (
	DefaultCAValidFor   = 5 * 365 * 24 * time.Hour
	DefaultCertValidFor = 365 * 24 * time.Hour
)

// LocalHosts are the names a worker certificate for one machine carries.
var LocalHosts = []string{"127.0.0.1", "::1", "localhost"}

// ClientRoles are the roles InitDir writes a client certificate for, each
// named after its role (admin.pem, submit.pem, read.pem).
var ClientRoles = []Role{RoleAdmin, RoleSubmit, RoleRead}

// InitDir writes a new CA into dir, a peer certificate "worker" valid for
// LocalHosts and hosts, and a client certificate for each of ClientRoles:
// everything a cluster on one machine needs. It refuses a dir that has a
// CA already.
func InitDir(dir string, validFor time.Duration, hosts []string) (*CA, error) {
	if validFor <= 0 {
		validFor = DefaultCertValidFor
	}
	ca, err := NewCA("corral local CA", time.Now().Add(max(validFor, DefaultCAValidFor)))
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	notAfter := time.Now().Add(validFor)
	is, err := ca.Issue(Request{Name: "worker", Role: RolePeer, Hosts: append(append([]string{}, LocalHosts...), hosts...), NotAfter: notAfter})
	if err != nil {
		return nil, err
	}
	if err := is.Save(dir, "worker"); err != nil {
		return nil, err
	}
	for _, r := range ClientRoles {
		is, err := ca.Issue(Request{Name: string(r), Role: r, NotAfter: notAfter})
		if err != nil {
			return nil, err
		}
		if err := is.Save(dir, string(r)); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	return ca, nil
}
