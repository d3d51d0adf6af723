package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy a test controls, to cut one process off from one
// server (Redis only, Consul only) without touching the others. Cut acts
// like a network partition: connections stay open and bytes sent during
// the cut are held, then delivered in order on Heal, as TCP retransmission
// would deliver them; a client that gave up meanwhile has its late writes
// arrive all the same. Reset closes every connection instead.
type Proxy struct {
	Addr   string // host:port clients dial
	target string
	ln     net.Listener

	mu     sync.Mutex
	cut    bool
	marker []byte        // armed by CutAt: cut when a client sends this
	fired  chan struct{} // closed when the marker was seen
	healed *sync.Cond
	conns  map[net.Conn]struct{}
	closed bool
	delay  time.Duration // added to every reply (server to client)
	wg     sync.WaitGroup
}

// NewProxy listens on a free port of 127.0.0.1 and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testenv: proxy to %s: %w", target, err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.healed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// StartProxy is NewProxy closed when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	// A connection opened during a cut gets no answer until Heal.
	if !p.waitHealed() {
		return
	}
	server, err := net.Dial("tcp", p.currentTarget())
	if err != nil {
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.pumpUp(server, client); done <- struct{}{} }()
	go func() { p.pump(client, server); done <- struct{}{} }()
	<-done
	<-done
}

// pumpUp copies client bytes to the server, cutting the proxy first when
// they carry the marker of CutAt.
func (p *Proxy) pumpUp(dst, src net.Conn) { p.copy(dst, src, true) }

// pump copies src to dst, holding what it read while the proxy is cut,
// each chunk no sooner than the delay set by Delay after it was read.
func (p *Proxy) pump(dst, src net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
		err error
	}
	// The reader goes on while the writer waits, as on a slow link: a
	// delay adds latency, it does not cut throughput.
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			ch <- chunk{b: buf[:n], due: time.Now().Add(p.replyDelay()), err: err}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if len(c.b) > 0 {
			if !p.waitHealed() {
				src.Close()
				return
			}
			if _, werr := dst.Write(c.b); werr != nil {
				src.Close()
				return
			}
		}
		if c.err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(c.err, io.EOF) {
				tc.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

// Delay holds every reply from the server for d before passing it on
// (0 ends it); requests pass at once. Replies already read keep the delay
// they were read with.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

func (p *Proxy) replyDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

func (p *Proxy) copy(dst, src net.Conn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if up {
				p.watch(buf[:n])
			}
			if !p.waitHealed() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			// Pass the end on, after whatever came before it.
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				tc.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

// watch cuts the proxy if b carries the armed marker.
func (p *Proxy) watch(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.marker != nil && bytes.Contains(b, p.marker) {
		p.cut, p.marker = true, nil
		close(p.fired)
	}
}

// CutAt arms the proxy to cut, as Cut does, the moment a client sends
// bytes containing marker; those bytes are the first held. The channel
// closes when that happened. It puts a partition exactly where it hurts,
// e.g. in the middle of a commit.
func (p *Proxy) CutAt(marker string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marker, p.fired = []byte(marker), make(chan struct{})
	return p.fired
}

// waitHealed blocks while the proxy is cut; false once it is closed.
func (p *Proxy) waitHealed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.cut && !p.closed {
		p.healed.Wait()
	}
	return !p.closed
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Cut stops every byte in both directions until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// Heal delivers what was held and lets traffic through again; it disarms
// CutAt.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut, p.marker = false, nil
	p.healed.Broadcast()
	p.mu.Unlock()
}

// Reset closes every open connection, as a peer's RST would; new ones are
// accepted (and held, if cut).
func (p *Proxy) Reset() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Retarget sends new connections to target and closes the open ones, as a
// failover that moves an address to another server does.
func (p *Proxy) Retarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	p.Reset()
}

func (p *Proxy) currentTarget() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Close stops the proxy and closes every connection. Safe to call twice.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.healed.Broadcast()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
