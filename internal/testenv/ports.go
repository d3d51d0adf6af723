package testenv

import (
	"fmt"
	"net"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right
// now. Servers started on it may still lose a race; StartRedis and
// StartConsul retry on other ports when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := freePorts(1, false)
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	return ports[0]
}

// freePorts returns n distinct ports on 127.0.0.1, free for TCP and, if
// udp, for UDP too (Serf gossips on both). Every port is held until all are
// found, so they differ.
func freePorts(n int, udp bool) ([]int, error) {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	ports := make([]int, 0, n)
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 50*n {
			return nil, fmt.Errorf("no %d free ports on 127.0.0.1 after %d attempts", n, attempts)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		if udp {
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				continue // taken for UDP: keep the TCP one held and try another
			}
			closers = append(closers, pc.Close)
		}
		ports = append(ports, port)
	}
	return ports, nil
}
