package plugins

import (
	"context"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/corralhq/corral/internal/grpcopt"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// MaxMessageBytes caps one gRPC message between host and plugin in either
// direction by default. gRPC's default of 4 MiB is too small for a large
// batch of jobs with their entity states.
const MaxMessageBytes = grpcopt.MaxMessageBytes

// MaxMessageEnv is the environment variable through which the host tells a
// plugin its message limit, so both ends use the same one. Plugins in other
// languages should read it too.
const MaxMessageEnv = "CORRAL_PLUGIN_MAX_MESSAGE_BYTES"

// MessageLimit is the limit the host passed in MaxMessageEnv, or
// MaxMessageBytes when it passed none (or nonsense).
func MessageLimit() int {
	if n, err := strconv.Atoi(os.Getenv(MaxMessageEnv)); err == nil && n > 0 {
		return n
	}
	return MaxMessageBytes
}

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
// Impl is only used on the plugin side; Host only on the host side.
type GRPCPlugin struct {
	// Corral plugins are gRPC only; this answers net/rpc with an error.
	plugin.NetRPCUnsupportedPlugin

	Impl pluginpb.HandlerServer
	// Host, when set, is served to the plugin through the broker so its
	// handlers can make read-only queries.
	Host pluginpb.HostServer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// BrokerUser is implemented by a plugin-side Impl that wants the broker, to
// dial the services the host offers (see pluginpb.Host).
type BrokerUser interface {
	SetBroker(b *plugin.GRPCBroker)
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if u, ok := p.Impl.(BrokerUser); ok {
		u.SetBroker(b)
	}
	pluginpb.RegisterHandlerServer(s, p.Impl)
	return nil
}

// Conn is the host's side of one plugin connection: the Handler client and
// the broker id under which the Host service is offered to the plugin
// (0 when the host offers none).
type Conn struct {
	pluginpb.HandlerClient
	HostServiceID uint32
}

// GRPCClient returns a *Conn on the host side, and starts serving Host to
// the plugin through the broker when there is one.
func (p *GRPCPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	c := &Conn{HandlerClient: pluginpb.NewHandlerClient(conn)}
	if p.Host != nil {
		c.HostServiceID = b.NextId()
		go b.AcceptAndServe(c.HostServiceID, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(append(opts, ServerOptions()...)...)
			pluginpb.RegisterHostServer(s, p.Host)
			return s
		})
	}
	return c, nil
}

// PluginSet is the plugin set of the plugin side.
func PluginSet(impl pluginpb.HandlerServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}

// HostPluginSet is the plugin set of the host side; host may be nil.
func HostPluginSet(host pluginpb.HostServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Host: host}}
}

// ServerOptions set the plugin server's message limits to MessageLimit(),
// its flow-control window and its stream workers.
func ServerOptions() []grpc.ServerOption {
	return grpcopt.ServerOptions(MessageLimit())
}

// NewGRPCServer is a plugin.ServeConfig.GRPCServer function: go-plugin's
// options (TLS, when configured) plus ServerOptions.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, ServerOptions()...)...)
}

// DialOptions set the host's message limits to limit bytes; pass them as
// plugin.ClientConfig.GRPCDialOptions, and limit to the plugin in
// MaxMessageEnv.
func DialOptions(limit int) []grpc.DialOption {
	return grpcopt.DialOptions(limit)
}

// EntityType is the default entity type of a handler: its name up to the
// first dot ("donor" for "donor.donate"), or the whole name when nothing
// comes before a dot, so an entity type is never empty. A handler that
// declares its entity (HandlerSpec.entity) reads and writes that one
// instead: use EntityOf wherever the declaration is at hand.
func EntityType(handler string) string {
	if i := strings.IndexByte(handler, '.'); i > 0 {
		return handler[:i]
	}
	return handler
}

// EntityOf is the entity type a declared handler reads and writes: the one
// it declares, else EntityType of its name. The worker loads and stores
// states by it and the SDK hands them to handlers by it.
func EntityOf(h *pluginpb.HandlerSpec) string {
	if e := h.GetEntity(); e != "" {
		return e
	}
	return EntityType(h.GetName())
}
