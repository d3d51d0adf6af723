package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const certsUsage = `Usage: coordinator certs init  [--dir D] [--host H]... [--valid-for D]
       coordinator certs issue [--dir D] --role ROLE --name NAME [--host H]... [--valid-for D]
       coordinator certs show  [-o table|json] FILE...

Makes the certificates of the workers' mutual TLS with a private CA kept
in --dir (default $CORRAL_STATE/tls, else .corral/tls).

  init   a new CA (ca.pem, ca-key.pem), a worker certificate worker.pem with
         role peer valid for 127.0.0.1, ::1, localhost and each --host, and
         client certificates admin.pem, submit.pem and read.pem, each with
         its -key.pem. Refuses a directory that has a CA already.
  issue  one certificate NAME.pem and NAME-key.pem signed by the CA of --dir.
         ROLE is read (status, state, results, dead letters), submit (read,
         plus submit and call), admin (everything: drain, reload, dead-letter
         replay and purge) or peer (a worker's: it serves the API and calls
         other workers; valid for each --host, default 127.0.0.1 ::1
         localhost, and NAME). Issuing again replaces the pair: send the
         worker SIGHUP to serve the new one.
  show   name, role, hosts and validity of certificates.

The CA key signs anything: keep it off the workers' machines in production.
See docs/security.md.

Flags:
`

func certsCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, certsUsage); fs.PrintDefaults() }
	dir := fs.String("dir", cli.LocalTLSDir(), "directory of the CA and the certificates")
	var hosts cli.Strings
	fs.Var(&hosts, "host", "DNS name or IP address a peer certificate is valid for (repeatable)")
	role := fs.String("role", "", "issue: read, submit, admin or peer")
	name := fs.String("name", "", "issue: the certificate's name: a worker's id, or who holds a client certificate; also its file name")
	validFor := fs.Duration("valid-for", pki.DefaultCertValidFor, "how long the certificates are valid")
	out := outputFlag(fs, outputTable)
	if len(args) == 0 {
		fs.Usage()
		return errors.New("certs needs init, issue or show")
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		fs.Usage()
		return nil
	}
	if done, err := parse(fs, args[1:], stderr); done || err != nil {
		return err
	}
	switch sub {
	case "init":
		if _, err := pki.InitDir(*dir, *validFor, hosts); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote a CA, worker.pem (role peer) and admin.pem, submit.pem, read.pem to %s\n", *dir)
		return nil
	case "issue":
		r, err := pki.ParseRole(*role)
		if err != nil {
			return fmt.Errorf("--role: %w", err)
		}
		if *name == "" || strings.ContainsAny(*name, `/\`) {
			return errors.New("--name: give a name without slashes; it names the files too")
		}
		ca, err := pki.LoadCA(*dir)
		if err != nil {
			return err
		}
		req := pki.Request{Name: *name, Role: r, Hosts: hosts, NotAfter: time.Now().Add(*validFor)}
		if r == pki.RolePeer {
			if len(req.Hosts) == 0 {
				req.Hosts = append(req.Hosts, pki.LocalHosts...)
			}
			req.Hosts = append(req.Hosts, *name)
		} else if len(hosts) > 0 {
			return errors.New("--host is for peer certificates; a client certificate names no host")
		}
		is, err := ca.Issue(req)
		if err != nil {
			return err
		}
		if err := is.Save(*dir, *name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s (role %s)\n", pki.CertFile(*dir, *name), pki.KeyFile(*dir, *name), r)
		return nil
	case "show":
		if fs.NArg() == 0 {
			return errors.New("certs show needs a certificate file")
		}
		rows := []certJSON{}
		for _, f := range fs.Args() {
			c, err := readCert(f)
			if err != nil {
				return err
			}
			rows = append(rows, c)
		}
		if out.json() {
			return printJSON(stdout, rows)
		}
		for _, c := range rows {
			printCert(stdout, c)
		}
		return nil
	}
	fs.Usage()
	return fmt.Errorf("unknown certs command %q", sub)
}

// readCert reads what certs show prints of a PEM file.
func readCert(path string) (certJSON, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return certJSON{}, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return certJSON{}, fmt.Errorf("%s: no PEM certificate", path)
	}
	if block.Type != "CERTIFICATE" {
		return certJSON{File: filepath.Base(path), Type: strings.ToLower(block.Type)}, nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return certJSON{}, fmt.Errorf("%s: %w", path, err)
	}
	role := "CA"
	if !c.IsCA {
		r, err := pki.RoleOf(c)
		role = string(r)
		if err != nil {
			role = err.Error()
		}
	}
	hosts := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	state := "valid"
	if now := time.Now(); now.After(c.NotAfter) {
		state = "EXPIRED"
	} else if now.Before(c.NotBefore) {
		state = "not yet valid"
	}
	return certJSON{File: filepath.Base(path), Type: "certificate", Name: c.Subject.CommonName, Role: role, Hosts: hosts,
		Issuer: c.Issuer.CommonName, NotAfter: c.NotAfter.UTC().Format(time.RFC3339), State: state}, nil
}

// printCert prints one file of certs show as a line.
func printCert(w io.Writer, c certJSON) {
	if c.Type != "certificate" {
		fmt.Fprintf(w, "%s\t(%s, not a certificate)\n", c.File, c.Type)
		return
	}
	fmt.Fprintf(w, "%s\tname %q\trole %s\thosts %s\tissuer %q\tuntil %s (%s)\n", c.File, c.Name, c.Role,
		strings.Join(c.Hosts, ","), c.Issuer, c.NotAfter, c.State)
}

// explainTLS adds to an error what the client presented, when the workers
// refused it: which certificate (and so which role) was used, or that none
// was.
func explainTLS(err error, from string) error {
	if err == nil {
		return nil
	}
	tlsErr := errors.Is(err, client.ErrTLS) || peer.HandshakeFailed(err)
	switch {
	case (tlsErr || status.Code(err) == codes.PermissionDenied) && from != "":
		return fmt.Errorf("%w\n(client certificate: %s)", err, from)
	case tlsErr:
		return fmt.Errorf("%w\n(no client certificate: give --tls-cert, --tls-key and --tls-ca, or CORRAL_TLS_*)", err)
	case from == "" && status.Code(err) == codes.Unavailable:
		return fmt.Errorf("%w\n(this client dials in plaintext: if the workers serve TLS, give --tls-cert, --tls-key and --tls-ca, or CORRAL_TLS_*)", err)
	}
	return err
}
