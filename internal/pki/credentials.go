package pki

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"time"

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
	lc := &lingerConn{Conn: raw}
	conn, info, err := s.TransportCredentials.ServerHandshake(lc)
	if err != nil {
		if s.refused != nil {
			s.refused(raw.RemoteAddr(), err)
		}
		return nil, nil, err
	}
	lc.established.Store(true)
	return conn, info, nil
}

// lingerConn lets a refused client read the alert that says why. In TLS
// 1.3 the client believes the handshake done and sends its first request
// before the server has judged its certificate; closing with that request
// unread resets the connection, which drops the alert and leaves the
// client a bare "broken pipe". So a connection closed before its handshake
// succeeded is half-closed first, and what the client sends is read until
// it hangs up (or a second passes).
type lingerConn struct {
	net.Conn
	established atomic.Bool
}

func (c *lingerConn) Close() error {
	if !c.established.Load() {
		if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, 1<<20))
	}
	return c.Conn.Close()
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
