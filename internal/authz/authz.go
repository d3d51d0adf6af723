// Package authz decides which worker RPCs a caller may make, from the role
// its client certificate names (see internal/pki), and carries a caller's
// role across a worker that forwards its call.
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"path"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Rule says who may call one RPC.
type Rule struct {
	// Least is the least of read, submit and admin that may call it; each
	// of them includes the ones before.
	Least pki.Role
	// Peer: workers call it on each other (a forwarded Call, Status of the
	// cluster), so a peer certificate may call it.
	Peer bool
}

// rules has one entry per RPC of the worker service; a method missing here
// is refused to everyone (and fails TestEveryMethodHasARole).
var rules = map[string]Rule{
	workerpb.Worker_Status_FullMethodName:          {Least: pki.RoleRead, Peer: true},
	workerpb.Worker_GetState_FullMethodName:        {Least: pki.RoleRead},
	workerpb.Worker_GetResult_FullMethodName:       {Least: pki.RoleRead},
	workerpb.Worker_Locate_FullMethodName:          {Least: pki.RoleRead},
	workerpb.Worker_ListDeadLetters_FullMethodName: {Least: pki.RoleRead},
	// A worker lists the jobs running on each of its peers.
	workerpb.Worker_ListJobs_FullMethodName: {Least: pki.RoleRead, Peer: true},
	workerpb.Worker_GetJobs_FullMethodName:  {Least: pki.RoleRead},
	workerpb.Worker_Submit_FullMethodName:   {Least: pki.RoleSubmit},
	workerpb.Worker_Call_FullMethodName:     {Least: pki.RoleSubmit, Peer: true},
	// Cancel is the submitter's undo: whoever may send a job may withdraw
	// one before it runs. Like Call it is forwarded to the partition's owner.
	workerpb.Worker_CancelJobs_FullMethodName: {Least: pki.RoleSubmit, Peer: true},
	workerpb.Worker_Drain_FullMethodName:      {Least: pki.RoleAdmin},
	// Changing the partition count is an operator's act.
	workerpb.Worker_Reshard_FullMethodName:           {Least: pki.RoleAdmin},
	workerpb.Worker_ReloadPlugins_FullMethodName:     {Least: pki.RoleAdmin},
	workerpb.Worker_ReplayDeadLetters_FullMethodName: {Least: pki.RoleAdmin},
	workerpb.Worker_PurgeDeadLetters_FullMethodName:  {Least: pki.RoleAdmin},
	// A schedule submits jobs for as long as it lives, past the
	// certificate that added it: operators' business, like a drain.
	workerpb.Worker_ListSchedules_FullMethodName:  {Least: pki.RoleRead},
	workerpb.Worker_AddSchedule_FullMethodName:    {Least: pki.RoleAdmin},
	workerpb.Worker_PauseSchedule_FullMethodName:  {Least: pki.RoleAdmin},
	workerpb.Worker_ResumeSchedule_FullMethodName: {Least: pki.RoleAdmin},
	workerpb.Worker_DeleteSchedule_FullMethodName: {Least: pki.RoleAdmin},
	workerpb.Worker_PauseHandler_FullMethodName:   {Least: pki.RoleAdmin},
	workerpb.Worker_ResumeHandler_FullMethodName:  {Least: pki.RoleAdmin},
	workerpb.Worker_LimitHandler_FullMethodName:   {Least: pki.RoleAdmin},
	workerpb.Worker_HandlerFlows_FullMethodName:   {Least: pki.RoleRead},
	// Published messages are read, like results and states.
	workerpb.Worker_Subscribe_FullMethodName:    {Least: pki.RoleRead},
	workerpb.Worker_ListEntities_FullMethodName: {Least: pki.RoleRead},
	// Deleting state undoes what jobs did: operators' business.
	workerpb.Worker_DeleteEntity_FullMethodName: {Least: pki.RoleAdmin},
	// A broadcast runs a handler, as a submitted job does; each member's
	// part is sent by the worker that fans it out.
	workerpb.Worker_Broadcast_FullMethodName:    {Least: pki.RoleSubmit},
	workerpb.Worker_RunBroadcast_FullMethodName: {Least: pki.RoleAdmin, Peer: true},
}

// RuleOf returns the rule of a full method name ("/pkg.Service/Method").
func RuleOf(method string) (Rule, bool) {
	r, ok := rules[method]
	return r, ok
}

var rank = map[pki.Role]int{pki.RoleRead: 1, pki.RoleSubmit: 2, pki.RoleAdmin: 3}

// Allows says whether role may call method.
func Allows(role pki.Role, method string) bool {
	r, ok := rules[method]
	if !ok {
		return false
	}
	if role == pki.RolePeer {
		return r.Peer
	}
	return rank[role] > 0 && rank[role] >= rank[r.Least]
}

// ForwardedRoleKey is the metadata a worker sends with a call it forwards:
// the role of the caller it forwards for. Only a peer certificate may send
// it, and the call must then suit both the peer and the forwarded role.
const ForwardedRoleKey = "corral-caller-role"

type roleKey struct{}

// WithRole returns ctx carrying role as the role its call was authorized
// under; the interceptor does this for every call it lets through.
func WithRole(ctx context.Context, role pki.Role) context.Context {
	return context.WithValue(ctx, roleKey{}, role)
}

// RoleFrom is the role a call was authorized under: the caller's, or the
// forwarded caller's when a peer forwarded it. ok is false when the server
// checks no roles (no TLS).
func RoleFrom(ctx context.Context) (pki.Role, bool) {
	r, ok := ctx.Value(roleKey{}).(pki.Role)
	return r, ok
}

// Forward adds the role of the call being served to ctx's outgoing
// metadata, for a call forwarded on its behalf to another worker. A peer's
// own call goes on under this worker's peer certificate alone.
func Forward(ctx context.Context) context.Context {
	if r, ok := RoleFrom(ctx); ok && r != pki.RolePeer {
		return metadata.AppendToOutgoingContext(ctx, ForwardedRoleKey, string(r))
	}
	return ctx
}

// Caller is who made a call, as its verified certificate says.
type Caller struct {
	Name      string   // the certificate's common name
	Role      pki.Role // the certificate's role
	Forwarded pki.Role // the role a peer forwarded for, or ""
}

// Effective is the role the call is judged under besides the peer's own.
func (c Caller) Effective() pki.Role {
	if c.Forwarded != "" {
		return c.Forwarded
	}
	return c.Role
}

func (c Caller) String() string {
	if c.Forwarded != "" {
		return fmt.Sprintf("the caller has role %s (forwarded by peer %q)", c.Forwarded, c.Name)
	}
	return fmt.Sprintf("the caller %q has role %s", c.Name, c.Role)
}

// CallerOf reads the caller from the verified client certificate of ctx's
// connection and the forwarded role in its metadata.
func CallerOf(ctx context.Context) (Caller, error) {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return Caller{}, status.Error(codes.Unauthenticated, "no connection information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Caller{}, status.Error(codes.Unauthenticated, "no verified client certificate: connect with TLS and a certificate signed by the cluster's CA")
	}
	leaf := info.State.VerifiedChains[0][0]
	role, err := pki.RoleOf(leaf)
	if err != nil {
		return Caller{}, status.Error(codes.PermissionDenied, err.Error())
	}
	c := Caller{Name: leaf.Subject.CommonName, Role: role}
	md, _ := metadata.FromIncomingContext(ctx)
	fwd := md.Get(ForwardedRoleKey)
	switch {
	case len(fwd) == 0:
		return c, nil
	case role != pki.RolePeer:
		return Caller{}, status.Errorf(codes.PermissionDenied, "%s may be sent by a peer certificate only; %q has role %s", ForwardedRoleKey, c.Name, role)
	case len(fwd) > 1:
		return Caller{}, status.Errorf(codes.PermissionDenied, "%s given %d times", ForwardedRoleKey, len(fwd))
	}
	f, err := pki.ParseRole(fwd[0])
	if err != nil || f == pki.RolePeer {
		return Caller{}, status.Errorf(codes.PermissionDenied, "%s %q from peer %q is not a caller's role", ForwardedRoleKey, fwd[0], c.Name)
	}
	c.Forwarded = f
	return c, nil
}

// Check authorizes one call of method by caller: a forwarded call must suit
// both the forwarding peer and the forwarded role.
func Check(c Caller, method string) error {
	r, ok := rules[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s is open to no role", method)
	}
	name := path.Base(method)
	if c.Forwarded != "" && !r.Peer {
		return status.Errorf(codes.PermissionDenied, "%s needs role %s and is never forwarded between workers; peer %q forwarded it for role %s", name, r.Least, c.Name, c.Forwarded)
	}
	if !Allows(c.Effective(), method) {
		return status.Errorf(codes.PermissionDenied, "%s needs role %s; %s", name, r.Least, c)
	}
	return nil
}

// UnaryServerInterceptor checks every call against the rules before the
// handler runs; the handler's context carries the effective role
// (RoleFrom). Refusals are logged.
func UnaryServerInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		c, err := authorize(ctx, info.FullMethod, log)
		if err != nil {
			return nil, err
		}
		return handler(WithRole(ctx, c.Effective()), req)
	}
}

// StreamServerInterceptor does the same for streaming RPCs.
func StreamServerInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if _, err := authorize(ss.Context(), info.FullMethod, log); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func authorize(ctx context.Context, method string, log *slog.Logger) (Caller, error) {
	c, err := CallerOf(ctx)
	if err == nil {
		err = Check(c, method)
	}
	if err != nil && log != nil {
		addr := ""
		if p, ok := grpcpeer.FromContext(ctx); ok {
			addr = p.Addr.String()
		}
		log.Warn("refused a call", "method", path.Base(method), "remote", addr, "reason", status.Convert(err).Message())
	}
	return c, err
}
