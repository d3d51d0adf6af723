package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/authz"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// coordinatorEnv is the environment that makes a coordinator run present a
// certificate of role (or, on a plaintext cluster, look for none).
func (c *cluster) coordinatorEnv(role pki.Role) []string {
	if c.pki == nil {
		return []string{"CORRAL_TLS=off"}
	}
	cert, key, ca := c.pki.ClientFiles(c.t, role)
	return []string{"CORRAL_TLS_CERT=" + cert, "CORRAL_TLS_KEY=" + key, "CORRAL_TLS_CA=" + ca}
}

// coordinatorAs runs the coordinator with a certificate of role.
func (c *cluster) coordinatorAs(role pki.Role, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bins, "coordinator"), append([]string{"--consul", c.consul.Addr}, args...)...)
	cmd.Env = append(os.Environ(), c.coordinatorEnv(role)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		err = fmt.Errorf("coordinator %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
	}
	return string(out), err
}

// dial connects to one worker with cfg, for calls aimed at it.
func dial(t *testing.T, addr string, cfg *tls.Config) workerpb.WorkerClient {
	t.Helper()
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return workerpb.NewWorkerClient(conn)
}

func addrsOf(t *testing.T, cl *client.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := cl.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.ID] = m.Address
	}
	return out
}

func wantDenied(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want refused", what)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v\n  does not say %q", what, err, p)
		}
	}
}

// Roles on real workers: read reads, submit submits and calls (also
// through a worker that forwards to the owner) but cannot drain, reload or
// purge, directly or through another worker; admin can.
func TestTLSRoles(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	c.start("w2")
	cl := c.client()
	owners := waitOwners(t, cl, 2)
	addr := addrsOf(t, cl)

	// read
	if _, err := c.coordinatorAs(pki.RoleRead, "status"); err != nil {
		t.Errorf("read status: %v", err)
	}
	_, err := c.coordinatorAs(pki.RoleRead, "submit", "--handler", "donor.donate", "--key", "alice", "--payload", `{"amount_cents":100,"campaign":"tls"}`)
	wantDenied(t, "read submit", err, "Submit needs role submit", "has role read")

	// submit: a call entering at the worker that does not own the key is
	// forwarded to the owner, which judges it by the caller's role.
	key := "tls-key"
	owner := owners[sharding.PartitionOf(key, sharding.DefaultPartitions)]
	other := map[string]string{"w1": "w2", "w2": "w1"}[owner]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	viaOther := func(role pki.Role, id string) (*workerpb.CallResponse, error) {
		return dial(t, addr[other], c.pki.ClientTLS(t, role)).Call(ctx, &workerpb.CallRequest{TimeoutMs: 5000,
			Job: &workerpb.Job{Id: id, Handler: "donor.donate", Key: key, Payload: []byte(`{"amount_cents":100,"campaign":"tls"}`)}})
	}
	resp, err := viaOther(pki.RoleSubmit, "tls-call-1")
	if err != nil {
		t.Fatalf("submit Call through %s: %v", other, err)
	}
	if resp.ServedBy != owner {
		t.Errorf("the call through %s was served by %q, want the owner %s (forwarded, not the durable path)", other, resp.ServedBy, owner)
	}
	_, err = viaOther(pki.RoleRead, "tls-call-2")
	wantDenied(t, "read Call through another worker", err, "Call needs role submit", "has role read")
	for _, args := range [][]string{{"drain", "w1"}, {"reload"}, {"dlq", "purge", "--all"}, {"dlq", "replay", "--all"}} {
		out, err := c.coordinatorAs(pki.RoleSubmit, args...)
		wantDenied(t, "submit "+strings.Join(args, " "), fmt.Errorf("%v %s", err, out), "needs role admin", "has role submit")
	}
	// Through another worker: a worker's own certificate forwarding a
	// submit caller (what a forwarded call carries) opens nothing admin.
	w2cert, w2key := pki.CertFile(c.pki.Dir, "w2"), pki.KeyFile(c.pki.Dir, "w2")
	peerID, err := pki.LoadIdentity(w2cert, w2key, c.pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	asPeer := dial(t, addr["w1"], peerID.ClientConfig())
	for _, role := range []pki.Role{pki.RoleSubmit, pki.RoleAdmin} {
		fctx := metadata.AppendToOutgoingContext(ctx, authz.ForwardedRoleKey, string(role))
		_, err = asPeer.Drain(fctx, &workerpb.DrainRequest{})
		wantDenied(t, "Drain forwarded by a peer for "+string(role), err, "never forwarded")
		_, err = asPeer.PurgeDeadLetters(fctx, &workerpb.DeadLetterIDs{All: true})
		wantDenied(t, "PurgeDeadLetters forwarded by a peer for "+string(role), err, "never forwarded")
	}
	_, err = asPeer.Drain(ctx, &workerpb.DrainRequest{})
	wantDenied(t, "Drain by a peer", err, "Drain needs role admin", "has role peer")

	// admin
	for _, args := range [][]string{{"reload", "w1"}, {"dlq", "purge", "--all"}, {"drain", "w2"}} {
		if out, err := c.coordinatorAs(pki.RoleAdmin, args...); err != nil {
			t.Errorf("admin %s: %v", strings.Join(args, " "), err)
		} else {
			t.Logf("admin %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
		}
	}
	if t.Failed() {
		return
	}
	if !strings.Contains(c.workerLog("w1"), "refused a call") {
		t.Error("w1 logged no refused call")
	}
}

// Strangers are refused at the handshake, each with a message that names
// the reason, at once (a certificate does not mend with retries).
func TestTLSRefusesStrangers(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	roots := c.pki.ClientTLS(t, pki.RoleAdmin).RootCAs

	other := testenv.NewPKI(t)
	otherCfg := other.ClientTLS(t, pki.RoleAdmin)
	otherCfg.RootCAs = roots
	cert, key := c.pki.Issue(t, pki.Request{Name: "old", Role: pki.RoleAdmin,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"no client certificate", &tls.Config{RootCAs: roots}, "certificate required"},
		{"a certificate from another CA", otherCfg, "unknown certificate authority"},
		{"an expired certificate", &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, "expired certificate"},
	} {
		cl, err := client.New(client.Config{ConsulAddr: c.consul.Addr, TLS: tc.cfg})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		_, err = cl.Submit(ctx, []*workerpb.Job{{Handler: "donor.donate", Key: "k", Payload: []byte(`{"amount_cents":1,"campaign":"x"}`)}})
		cancel()
		cl.Close()
		took := time.Since(start)
		if err == nil || !errors.Is(err, client.ErrTLS) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want client.ErrTLS saying %q", tc.name, err, tc.want)
		} else if took > 5*time.Second {
			t.Errorf("%s: refused after %v of retries; a refused certificate should fail at once", tc.name, took)
		} else {
			t.Logf("%s: refused in %v: %v", tc.name, took.Round(time.Millisecond), err)
		}
	}
	// The coordinator says the same, and a plaintext one is told TLS may be the reason.
	cmd := exec.Command(filepath.Join(c.bins, "coordinator"), "--consul", c.consul.Addr, "--insecure", "--timeout", "5s", "status")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "plaintext") {
		t.Errorf("plaintext coordinator: %v: %s", err, out)
	}
	t.Logf("plaintext coordinator: %s", strings.TrimSpace(string(out)))
}

// A worker without TLS serves on loopback only, unless --insecure; a
// worker's certificate must grant role peer and name its advertised host.
func TestWorkerTLSStartChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	bins := buildBinaries(t)
	p := testenv.NewPKI(t)
	readCert, readKey := p.Issue(t, pki.Request{Name: "r", Role: pki.RoleRead})
	peerFlags := p.WorkerFlags(t, "w1")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext on all interfaces", []string{"--listen", "0.0.0.0:0"}, "refusing to serve the gRPC API on 0.0.0.0:0 without TLS"},
		{"plaintext with --insecure", []string{"--listen", "0.0.0.0:0", "--insecure"}, "cannot reach Redis"},
		{"a client certificate", []string{"--tls-cert", readCert, "--tls-key", readKey, "--tls-ca", p.CAFile()}, "needs role peer"},
		{"a certificate for other hosts", append([]string{"--advertise", "10.9.8.7:7070"}, peerFlags...), "not valid for 10.9.8.7"},
		{"half the TLS flags", []string{"--tls-cert", readCert}, "go together"},
	} {
		out, took, err := runWorker(t, bins, append([]string{"--redis", "127.0.0.1:1", "--consul", "127.0.0.1:1"}, tc.args...)...)
		last := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
		if err == nil || !strings.Contains(last, tc.want) {
			t.Errorf("%s: exit %v, last line %q, want it to say %q\n%s", tc.name, err, last, tc.want, out)
			continue
		}
		t.Logf("%s: exited after %v: %s", tc.name, took.Round(time.Millisecond), last)
	}
}

// SIGHUP makes each worker serve a new certificate from the next
// handshake on, while a load of submissions runs through the workers:
// nothing acknowledged is lost or applied twice.
func TestTLSRotateUnderLoad(t *testing.T) {
	c := newCluster(t, "--audit")
	threeWorkers(c)
	before := c.waitBalanced("w1", "w2", "w3")
	cl := c.client()
	addr := addrsOf(t, cl)
	l := startLoad(t, c, loadSize())
	l.calls = startCalls(t, c, uint64(time.Now().UnixNano()), nil)
	l.waitMore(t, 500)

	served := func(id string) string {
		conn, err := tls.Dial("tcp", addr[id], c.pki.ClientTLS(t, pki.RoleRead))
		if err != nil {
			t.Fatalf("TLS dial %s: %v", id, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	fault := time.Now()
	for _, id := range []string{"w1", "w2", "w3"} {
		old := served(id)
		c.pki.WorkerFlags(t, id) // a new certificate in the same files
		c.signal(id, syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for served(id) == old {
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves certificate %s 10s after SIGHUP", id, old)
			}
			time.Sleep(20 * time.Millisecond)
		}
		l.waitMore(t, 200)
	}
	// New connections from a client and between peers use the new certificates.
	fresh := c.client()
	if _, err := fresh.Status(context.Background()); err != nil {
		t.Fatalf("status over new connections after the rotation: %v", err)
	}
	l.waitMore(t, 500)
	rep := verify(t, c, "TLS rotation", l, fault, nil, before)
	t.Log(l.calls)
	if rep.lost > 0 || rep.duplicated > 0 {
		t.Fatalf("rotation lost %d and duplicated %d", rep.lost, rep.duplicated)
	}
	if rep.acked == 0 {
		t.Fatal("no submission was acknowledged")
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		if !strings.Contains(c.workerLog(id), "TLS certificate reloaded") {
			t.Errorf("%s did not log the reload", id)
		}
	}
}
