package authz_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/authz"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func fullName(method string) string {
	return "/" + workerpb.Worker_ServiceDesc.ServiceName + "/" + method
}

// A new RPC fails this test until it has a role in the rules.
func TestEveryMethodHasARole(t *testing.T) {
	t.Parallel()
	desc := workerpb.Worker_ServiceDesc
	names := map[string]bool{}
	for _, m := range desc.Methods {
		names[fullName(m.MethodName)] = true
	}
	for _, s := range desc.Streams {
		names[fullName(s.StreamName)] = true
	}
	for name := range names {
		r, ok := authz.RuleOf(name)
		if !ok {
			t.Errorf("%s has no role: add it to the rules in internal/authz", name)
			continue
		}
		if r.Least != pki.RoleRead && r.Least != pki.RoleSubmit && r.Least != pki.RoleAdmin {
			t.Errorf("%s: least role %q is not read, submit or admin", name, r.Least)
		}
	}
	for _, name := range []string{workerpb.Worker_Submit_FullMethodName, workerpb.Worker_Drain_FullMethodName} {
		if !names[name] {
			t.Fatalf("the service descriptor lacks %s: the test reads the wrong descriptor", name)
		}
	}
}

func TestRoleTable(t *testing.T) {
	t.Parallel()
	want := map[pki.Role][]string{
		pki.RoleRead:   {"Status", "GetState", "GetResult", "Locate", "ListDeadLetters", "ListJobs", "GetJobs", "ListSchedules", "HandlerFlows", "ListEntities"},
		pki.RoleSubmit: {"Status", "GetState", "GetResult", "Locate", "ListDeadLetters", "ListJobs", "GetJobs", "ListSchedules", "HandlerFlows", "ListEntities", "Submit", "Call", "CancelJobs", "Broadcast"},
		pki.RoleAdmin: {"Status", "GetState", "GetResult", "Locate", "ListDeadLetters", "ListJobs", "GetJobs", "ListSchedules", "HandlerFlows", "ListEntities", "Submit", "Call", "CancelJobs", "Broadcast",
			"Drain", "ReloadPlugins", "ReplayDeadLetters", "PurgeDeadLetters",
			"AddSchedule", "PauseSchedule", "ResumeSchedule", "DeleteSchedule",
			"PauseHandler", "ResumeHandler", "LimitHandler", "DeleteEntity", "RunBroadcast", "Reshard"},
		pki.RolePeer: {"Status", "Call", "ListJobs", "CancelJobs", "RunBroadcast"},
	}
	for _, role := range pki.Roles {
		allowed := map[string]bool{}
		for _, m := range want[role] {
			allowed[m] = true
		}
		for _, m := range workerpb.Worker_ServiceDesc.Methods {
			if got := authz.Allows(role, fullName(m.MethodName)); got != allowed[m.MethodName] {
				t.Errorf("role %s, %s: allowed %v, want %v", role, m.MethodName, got, allowed[m.MethodName])
			}
		}
	}
	if authz.Allows(pki.Role("root"), workerpb.Worker_Status_FullMethodName) {
		t.Error("an unknown role was allowed Status")
	}
}

// server is a real gRPC worker service over mutual TLS with the role
// check; every call the check lets through answers Unimplemented.
type server struct {
	pki  *testenv.PKI
	addr string
}

func startServer(t *testing.T) *server {
	t.Helper()
	p := testenv.NewPKI(t)
	cert, key := p.Issue(t, pki.Request{Name: "w1", Role: pki.RolePeer, Hosts: pki.LocalHosts})
	id, err := pki.LoadIdentity(cert, key, p.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(id.ServerCredentials(nil)), grpc.UnaryInterceptor(authz.UnaryServerInterceptor(nil)))
	workerpb.RegisterWorkerServer(srv, workerpb.UnimplementedWorkerServer{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return &server{pki: p, addr: lis.Addr().String()}
}

// call makes one call of method with cfg's certificate and md as metadata.
func (s *server) call(t *testing.T, cfg *tls.Config, method string, md ...string) error {
	t.Helper()
	conn, err := grpc.Dial(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	return conn.Invoke(ctx, fullName(method), &workerpb.StatusRequest{}, &workerpb.StatusResponse{})
}

func (s *server) as(t *testing.T, role pki.Role) *tls.Config { return s.pki.ClientTLS(t, role) }

func allowed(err error) bool { return status.Code(err) == codes.Unimplemented }

// wantRefused checks err is a refusal whose message holds every part.
func wantRefused(t *testing.T, what string, err error, code codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %v", what, err, code)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %q does not say %q", what, err, p)
		}
	}
	t.Logf("%s: %v", what, status.Convert(err).Message())
}

func TestHandshakeRefusals(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	roots := s.as(t, pki.RoleAdmin).RootCAs

	noCert := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	wantRefused(t, "no client certificate", s.call(t, noCert, "Status"), codes.Unavailable, "certificate required")

	other := testenv.NewPKI(t)
	otherCfg := other.ClientTLS(t, pki.RoleAdmin)
	otherCfg.RootCAs = roots // trusts the server, but its own certificate is from another CA
	wantRefused(t, "certificate from another CA", s.call(t, otherCfg, "Status"), codes.Unavailable, "unknown certificate authority")

	cert, key := s.pki.Issue(t, pki.Request{Name: "old", Role: pki.RoleAdmin,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	expired := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13}
	wantRefused(t, "expired certificate", s.call(t, expired, "Status"), codes.Unavailable, "expired certificate")

	tls12 := s.as(t, pki.RoleAdmin)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	wantRefused(t, "TLS 1.2", s.call(t, tls12, "Status"), codes.Unavailable, "protocol version")

	untrusting := s.as(t, pki.RoleAdmin)
	untrusting.RootCAs = other.ClientTLS(t, pki.RoleRead).RootCAs
	wantRefused(t, "server from another CA", s.call(t, untrusting, "Status"), codes.Unavailable, "certificate signed by unknown authority")
}

func TestRolesOnAServer(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	read, submit, admin := s.as(t, pki.RoleRead), s.as(t, pki.RoleSubmit), s.as(t, pki.RoleAdmin)

	if err := s.call(t, read, "Status"); !allowed(err) {
		t.Errorf("read Status: %v", err)
	}
	wantRefused(t, "read Submit", s.call(t, read, "Submit"), codes.PermissionDenied, "Submit needs role submit", "has role read")
	wantRefused(t, "read Call", s.call(t, read, "Call"), codes.PermissionDenied, "Call needs role submit", "has role read")
	for _, m := range []string{"Submit", "Call", "GetState"} {
		if err := s.call(t, submit, m); !allowed(err) {
			t.Errorf("submit %s: %v", m, err)
		}
	}
	for _, m := range []string{"Drain", "ReloadPlugins", "PurgeDeadLetters", "ReplayDeadLetters"} {
		wantRefused(t, "submit "+m, s.call(t, submit, m), codes.PermissionDenied, m+" needs role admin", "has role submit")
		if err := s.call(t, admin, m); !allowed(err) {
			t.Errorf("admin %s: %v", m, err)
		}
	}
}

// A worker forwards a Call with the caller's role; the receiving worker
// takes that role from a peer certificate only, and a forwarded role never
// opens what the peer role does not.
func TestForwardedRole(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	cert, key := s.pki.Issue(t, pki.Request{Name: "w2", Role: pki.RolePeer, Hosts: pki.LocalHosts})
	id, err := pki.LoadIdentity(cert, key, s.pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	peerCfg := id.ClientConfig()
	fwd := func(r pki.Role) []string { return []string{authz.ForwardedRoleKey, string(r)} }

	for _, m := range []string{"Call", "Status"} {
		if err := s.call(t, peerCfg, m); !allowed(err) {
			t.Errorf("peer %s: %v", m, err)
		}
	}
	if err := s.call(t, peerCfg, "Call", fwd(pki.RoleSubmit)...); !allowed(err) {
		t.Errorf("peer Call for a submit caller: %v", err)
	}
	wantRefused(t, "peer Submit", s.call(t, peerCfg, "Submit"), codes.PermissionDenied, "Submit needs role submit", "has role peer")
	wantRefused(t, "peer Drain", s.call(t, peerCfg, "Drain"), codes.PermissionDenied, "Drain needs role admin", "has role peer")
	wantRefused(t, "peer Call for a read caller", s.call(t, peerCfg, "Call", fwd(pki.RoleRead)...), codes.PermissionDenied,
		"Call needs role submit", "has role read (forwarded by peer \"w2\")")
	for _, r := range []pki.Role{pki.RoleSubmit, pki.RoleAdmin} {
		for _, m := range []string{"Drain", "PurgeDeadLetters", "ReloadPlugins"} {
			wantRefused(t, "peer "+m+" for a "+string(r)+" caller", s.call(t, peerCfg, m, fwd(r)...), codes.PermissionDenied,
				m+" needs role admin and is never forwarded")
		}
	}
	wantRefused(t, "peer forwarding role peer", s.call(t, peerCfg, "Call", fwd(pki.RolePeer)...), codes.PermissionDenied, "is not a caller's role")
	wantRefused(t, "submit claiming to forward admin", s.call(t, s.as(t, pki.RoleSubmit), "Drain", fwd(pki.RoleAdmin)...),
		codes.PermissionDenied, "peer certificate only")
}

func TestForwardCarriesTheCallersRole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		role pki.Role
		want []string
	}{
		{pki.RoleSubmit, []string{"submit"}},
		{pki.RoleAdmin, []string{"admin"}},
		{pki.RolePeer, nil},
		{"", nil},
	} {
		ctx := context.Background()
		if tc.role != "" {
			ctx = authz.WithRole(ctx, tc.role)
		}
		md, _ := metadata.FromOutgoingContext(authz.Forward(ctx))
		if got := md.Get(authz.ForwardedRoleKey); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("role %q: forwarded %v, want %v", tc.role, got, tc.want)
		}
	}
}
