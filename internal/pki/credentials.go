package pki

import (
	"context"
	"net"

	"google.golang.org/grpc/credentials"
)

// ServerCredentials are gRPC server credentials from ServerConfig: each
// handshake uses the certificate and CA read last. refused, if not nil,
// hears of every handshake that failed (no certificate, another CA,
// expired), with the peer's address.
func (id *Identity) ServerCredentials(refused func(addr net.Addr, err error)) credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: credentials.NewTLS(id.ServerConfig()), refused: refused}
}

type serverCreds struct {
	credentials.TransportCredentials
	refused func(net.Addr, error)
}

func (s *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := s.TransportCredentials.ServerHandshake(raw)
	if err != nil && s.refused != nil {
		s.refused(raw.RemoteAddr(), err)
	}
	return conn, info, err
}

func (s *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: s.TransportCredentials.Clone(), refused: s.refused}
}

// ClientCredentials are gRPC client credentials that build each handshake
// from the certificate and CA read last, so connections a long-lived
// process opens after a Reload present the new certificate and trust the
// new CA.
func (id *Identity) ClientCredentials() credentials.TransportCredentials {
	return &clientCreds{id: id}
}

type clientCreds struct {
	id         *Identity
	serverName string // set by OverrideServerName; else the dialed host
}

func (c *clientCreds) tls() credentials.TransportCredentials {
	cfg := c.id.ClientConfig()
	cfg.ServerName = c.serverName
	return credentials.NewTLS(cfg)
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.tls().ClientHandshake(ctx, authority, raw)
}

func (c *clientCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.tls().ServerHandshake(raw)
}

func (c *clientCreds) Info() credentials.ProtocolInfo { return c.tls().Info() }

func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

func (c *clientCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}
