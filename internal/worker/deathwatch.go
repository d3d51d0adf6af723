package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/discovery"
)

// deathWatch finds dead peers faster than their leases expire. It keeps a
// bare TCP connection to every peer's gRPC port: when a process is killed
// its kernel closes its sockets at once, the connection ends, and a new
// dial to the port is refused. On that evidence (a port that accepted this
// worker's connection now refuses, twice in a row) it buries
// the peer's lease, which every worker's ring honors, and the peer's
// partitions are claimed under new epochs.
//
// Only a refusal counts. A paused process (SIGSTOP) still accepts
// connections, its kernel does; a peer cut off by the network times out.
// Neither is taken for dead: such a peer keeps its partitions until its
// lease lapses, as before. A false burial is fenced like any takeover, and
// happens at most once per lease token (lease.Bury).
type deathWatch struct {
	self string
	log  *slog.Logger
	// bury ends a peer's lease; it reports whether it did.
	bury func(ctx context.Context, token string) (bool, error)
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu      sync.Mutex
	watches map[peerIncarnation]context.CancelFunc
	wg      sync.WaitGroup
}

// peerIncarnation is one process of a peer: its id, address and lease token.
type peerIncarnation struct{ id, addr, token string }

const (
	watchDialTimeout = time.Second            // a dial that takes longer is no evidence either way
	watchConfirm     = 10 * time.Millisecond  // between the two refused dials
	watchQuick       = 5 * time.Millisecond   // after a connection that ended at once, growing to watchRetry
	watchRetry       = 500 * time.Millisecond // after a dial that failed otherwise
	watchBuryRetry   = time.Second            // after Redis could not take the burial
)

func newDeathWatch(self string, log *slog.Logger, bury func(context.Context, string) (bool, error)) *deathWatch {
	d := &net.Dialer{Timeout: watchDialTimeout}
	return &deathWatch{self: self, log: log, bury: bury, watches: map[peerIncarnation]context.CancelFunc{},
		dial: func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}
}

// update watches the members of a snapshot and stops watching those gone
// from it (or those whose address or lease token changed).
func (w *deathWatch) update(ctx context.Context, ms []discovery.Member) {
	want := map[peerIncarnation]bool{}
	for _, m := range ms {
		if tok := m.Meta[metaLease]; m.ID != w.self && tok != "" && m.Address != "" {
			want[peerIncarnation{m.ID, m.Address, tok}] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, cancel := range w.watches {
		if !want[p] {
			cancel()
			delete(w.watches, p)
		}
	}
	for p := range want {
		if _, ok := w.watches[p]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w.watches[p] = cancel
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.watch(wctx, p)
		}()
	}
}

// stop ends every watch and waits for them.
func (w *deathWatch) stop() {
	w.mu.Lock()
	for p, cancel := range w.watches {
		cancel()
		delete(w.watches, p)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// watch holds a connection to p's port until p is buried or ctx ends.
func (w *deathWatch) watch(ctx context.Context, p peerIncarnation) {
	seen := false // its port accepted us: a refusal now means it closed
	// backoff grows while connections end at once: a dying process may
	// still accept one on its way out, but a peer that keeps closing them
	// is not dialed in a tight loop.
	backoff := watchQuick
	for ctx.Err() == nil {
		conn, err := w.dial(ctx, p.addr)
		if err == nil {
			seen = true
			if held := w.hold(ctx, conn); held >= time.Second {
				backoff = watchQuick
			} else {
				sleep(ctx, backoff)
				backoff = min(2*backoff, watchRetry)
			}
			continue // the connection ended: is the port still there?
		}
		if !refused(err) || !seen {
			// A port that never accepted us may be an address we cannot
			// reach (a firewall that rejects): no evidence of a death.
			sleep(ctx, watchRetry)
			continue
		}
		sleep(ctx, watchConfirm)
		if conn, err := w.dial(ctx, p.addr); err == nil || !refused(err) {
			if conn != nil {
				conn.Close()
			}
			continue
		}
		buried, err := w.bury(ctx, p.token)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("cannot end a dead peer's lease early; its partitions move when it expires", "peer", p.id, "err", err)
			}
			sleep(ctx, watchBuryRetry)
			continue
		}
		if buried {
			w.log.Warn("peer's port refuses connections: ended its lease, its partitions move now", "peer", p.id, "address", p.addr, "token", p.token)
		}
		return // its lease is gone (or it was buried once already): nothing more to tell
	}
}

// hold reads from conn, discarding, until it ends or ctx does, and says
// how long it lasted.
func (w *deathWatch) hold(ctx context.Context, conn net.Conn) time.Duration {
	start := time.Now()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	io.Copy(io.Discard, conn) //nolint:errcheck // any end of the connection is the news
	conn.Close()
	return time.Since(start)
}

// refused reports whether a dial was refused: nothing listens on the port.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
