package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/corralhq/corral/internal/pki"
)

// checkPlaintext decides whether a worker without TLS may serve on lis:
// on a loopback address it may, with a warning; elsewhere only with
// --insecure, since anyone who reaches the port could call every RPC.
func checkPlaintext(listen string, lis net.Listener, insecure bool, logger *slog.Logger) error {
	addr := listen
	if tcp, ok := lis.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		logger.Warn("serving the gRPC API without TLS on loopback: any local process may call every RPC; see --tls-cert and docs/security.md", "listen", addr)
		return nil
	}
	if !insecure {
		return fmt.Errorf("refusing to serve the gRPC API on %s without TLS: anyone who reaches it could submit, drain or purge; give --tls-cert, --tls-key and --tls-ca (docs/security.md), or --insecure to run unauthenticated anyway", addr)
	}
	logger.Warn("serving the gRPC API without TLS (--insecure): anyone who reaches it may call every RPC", "listen", addr)
	return nil
}

// workerCertCheck refuses a certificate peers and clients would refuse
// later, with a sentence: it must grant role peer (workers call each other
// with it) and name the host the worker advertises.
func workerCertCheck(certFile, advertise string) func(leaf *x509.Certificate, role pki.Role) error {
	return func(leaf *x509.Certificate, role pki.Role) error {
		if role != pki.RolePeer {
			return fmt.Errorf("the certificate in %s has role %s; a worker's needs role peer (coordinator certs issue --role peer --name ID --host HOST)", certFile, role)
		}
		host, _, err := net.SplitHostPort(advertise)
		if err != nil {
			return fmt.Errorf("advertise address %q: %w", advertise, err)
		}
		if err := leaf.VerifyHostname(host); err != nil {
			names := append([]string{}, leaf.DNSNames...)
			for _, ip := range leaf.IPAddresses {
				names = append(names, ip.String())
			}
			return fmt.Errorf("the certificate in %s is not valid for %s, the host this worker advertises (it names %s): peers and clients would refuse it; issue one with --host %s, or change --advertise",
				certFile, host, strings.Join(names, ", "), host)
		}
		return nil
	}
}

// checkWorkerCert applies workerCertCheck to the certificate loaded at start.
func checkWorkerCert(id *pki.Identity, advertise string) error {
	cert, _, _ := id.Files()
	return workerCertCheck(cert, advertise)(id.Leaf(), id.Role())
}

// reloadTLS reads the certificate, key and CA again (SIGHUP). A pair that
// is invalid, or that this worker could not serve with, leaves the one in
// use in place.
func reloadTLS(id *pki.Identity, advertise string, logger *slog.Logger) {
	old := id.Describe()
	cert, _, _ := id.Files()
	if err := id.Reload(workerCertCheck(cert, advertise)); err != nil {
		logger.Error("TLS reload failed; keeping the certificate in use", "err", err, "in_use", old)
		return
	}
	logger.Info("TLS certificate reloaded", "now", id.Describe(), "before", old)
}
