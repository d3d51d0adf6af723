package plugins

import (
	"context"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// MaxMessageBytes caps one gRPC message between host and plugin in either
// direction. gRPC's default of 4 MiB is too small for a large batch of jobs
// with their entity states.
const MaxMessageBytes = 64 << 20

// PluginName is the key of the Handler service in the go-plugin plugin set.
const PluginName = "handler"

// Handshake is what host and plugin must agree on before talking. Bump
// ProtocolVersion on an incompatible change to handler.proto; the cookie only
// stops people from running a plugin binary by hand.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "CORRAL_PLUGIN",
	MagicCookieValue: "handler",
}

// GRPCPlugin carries the Handler service over go-plugin's gRPC transport.
// Impl is only used on the plugin side; the host leaves it nil.
type GRPCPlugin struct {
	// Corral plugins are gRPC only; this answers net/rpc with an error.
	plugin.NetRPCUnsupportedPlugin

	Impl pluginpb.HandlerServer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterHandlerServer(s, p.Impl)
	return nil
}

// GRPCClient returns a pluginpb.HandlerClient on the host side.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return pluginpb.NewHandlerClient(conn), nil
}

// PluginSet is the plugin set of both ends: the plugin passes its
// implementation, the host passes nil.
func PluginSet(impl pluginpb.HandlerServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}

// ServerOptions raise the plugin server's message limits to MaxMessageBytes.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
	}
}

// NewGRPCServer is a plugin.ServeConfig.GRPCServer function: go-plugin's
// options (TLS, when configured) plus ServerOptions.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, ServerOptions()...)...)
}

// DialOptions raise the host's message limits to MaxMessageBytes; pass them
// as plugin.ClientConfig.GRPCDialOptions.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
		),
	}
}

// EntityType is the entity type a handler reads and writes: its name up to
// the first dot ("donor" for "donor.donate"), or the whole name when it has
// no dot.
func EntityType(handler string) string {
	if i := strings.IndexByte(handler, '.'); i >= 0 {
		return handler[:i]
	}
	return handler
}
