package authz_test

import (
	"context"
	"net"
	"testing"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/authz"
	"github.com/corralhq/corral/internal/grpcopt"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// callServer answers every Call at once with a donation-sized reply.
type callServer struct {
	workerpb.UnimplementedWorkerServer
}

func (callServer) Call(_ context.Context, req *workerpb.CallRequest) (*workerpb.CallResponse, error) {
	return &workerpb.CallResponse{Id: req.Job.Id, ServedBy: "w1", Result: &workerpb.JobResult{Id: req.Job.Id,
		State: workerpb.JobResult_DONE, Result: []byte(`{"total_cents":10000,"count":1,"zakat_cents":250}`)}}, nil
}

// BenchmarkCallHop is the cost of one gRPC hop of a Call with nothing
// behind it, plaintext and with mutual TLS and the role check: what TLS
// adds to each hop of a real Call.
//
//	go test -run '^$' -bench CallHop -benchtime 20000x ./internal/authz
func BenchmarkCallHop(b *testing.B) {
	p := testenv.NewPKI(b)
	cert, key := p.Issue(b, pki.Request{Name: "w1", Role: pki.RolePeer, Hosts: pki.LocalHosts})
	id, err := pki.LoadIdentity(cert, key, p.CAFile())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		srv  []grpc.ServerOption
		dial grpc.DialOption
	}{
		{"plaintext", nil, grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"mTLS", []grpc.ServerOption{grpc.Creds(id.ServerCredentials(nil)), grpc.UnaryInterceptor(authz.UnaryServerInterceptor(nil))},
			grpc.WithTransportCredentials(credentials.NewTLS(p.ClientTLS(b, pki.RoleSubmit)))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := grpc.NewServer(append(grpcopt.ServerOptions(grpcopt.MaxMessageBytes), tc.srv...)...)
			workerpb.RegisterWorkerServer(srv, callServer{})
			go srv.Serve(lis)
			defer srv.Stop()
			conn, err := grpc.Dial(lis.Addr().String(), append(grpcopt.DialOptions(grpcopt.MaxMessageBytes), tc.dial)...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := workerpb.NewWorkerClient(conn)
			req := &workerpb.CallRequest{TimeoutMs: 2000, Job: &workerpb.Job{Id: "01J0000000000000000000000", Handler: "donor.donate", Key: "donor-00042",
				Payload: []byte(`{"amount_cents": 10000, "campaign": "water"}`)}}
			ctx := context.Background()
			if _, err := c.Call(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := c.Call(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
