package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	var out, errb bytes.Buffer
	run := func(args ...string) error {
		out.Reset()
		errb.Reset()
		return certsCmd(args, &out, &errb)
	}
	if err := run("init", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	if err := run("init", "--dir", dir); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("second init: %v", err)
	}
	if err := run("issue", "--dir", dir, "--role", "peer", "--name", "w7", "--host", "10.0.0.7"); err != nil {
		t.Fatal(err)
	}
	id, err := pki.LoadIdentity(pki.CertFile(dir, "w7"), pki.KeyFile(dir, "w7"), filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"10.0.0.7", "w7"} {
		if err := id.Leaf().VerifyHostname(h); err != nil || id.Role() != pki.RolePeer {
			t.Errorf("w7: role %s, host %s: %v", id.Role(), h, err)
		}
	}
	for _, bad := range [][]string{
		{"issue", "--dir", dir, "--role", "root", "--name", "x"},
		{"issue", "--dir", dir, "--role", "read", "--name", "x", "--host", "h"},
		{"issue", "--dir", dir, "--role", "read", "--name", "../x"},
		{"issue", "--dir", t.TempDir(), "--role", "read", "--name", "x"},
	} {
		if err := run(bad...); err == nil {
			t.Errorf("certs %s: no error", strings.Join(bad, " "))
		}
	}
	if err := run("show", pki.CertFile(dir, "read"), pki.KeyFile(dir, "read")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "role read") || !strings.Contains(out.String(), "not a certificate") {
		t.Errorf("show: %s", out.String())
	}
	out.Reset()
	if err := run("show", "-o", "json", pki.CertFile(dir, "read"), pki.KeyFile(dir, "read")); err != nil {
		t.Fatal(err)
	}
	var shown []certJSON
	if err := json.Unmarshal(out.Bytes(), &shown); err != nil || len(shown) != 2 || shown[0].Role != "read" || shown[0].Name != "read" ||
		shown[0].State != "valid" || shown[1].Type == "certificate" {
		t.Errorf("show -o json: %v %s", err, out.String())
	}
}

func TestExplainTLS(t *testing.T) {
	denied := status.Error(codes.PermissionDenied, "Drain needs role admin; the caller \"s\" has role submit")
	refused := errors.Join(client.ErrTLS, status.Error(codes.Unavailable, "remote error: tls: expired certificate"))
	plain := status.Error(codes.Unavailable, "error reading server preface: EOF")
	for _, tc := range []struct {
		err  error
		from string
		want string
	}{
		{denied, "submit.pem (role submit)", "client certificate: submit.pem"},
		{refused, "old.pem (role admin)", "client certificate: old.pem"},
		{refused, "", "no client certificate"},
		{plain, "", "dials in plaintext"},
		{status.Error(codes.InvalidArgument, "bad"), "", "bad"},
	} {
		if got := explainTLS(tc.err, tc.from).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("%v from %q: %q, want it to say %q", tc.err, tc.from, got, tc.want)
		}
	}
	if explainTLS(nil, "x") != nil {
		t.Error("explainTLS(nil) is not nil")
	}
}
