package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/testenv"
)

// TestDeathWatchBuriesOnlyAPortThatClosed: a peer whose port accepted the
// watch and then refuses (a killed process) is buried; one that keeps
// accepting without a word (a paused process) is not, nor one whose port
// never accepted (an address this worker cannot reach).
func TestDeathWatchBuriesOnlyAPortThatClosed(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	buried := map[string]int{}
	w := newDeathWatch("self", slog.New(slog.NewTextHandler(testWriter{t}, nil)), func(_ context.Context, tok string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		buried[tok]++
		return true, nil
	})
	defer w.stop()
	// listen returns a port, a kill for it and a count of the connections
	// it has accepted.
	listen := func() (net.Listener, func(), func() int) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var cmu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				cmu.Lock()
				conns = append(conns, c)
				cmu.Unlock()
			}
		}()
		// kill closes the port and every connection, as the kernel does for
		// a killed process.
		return ln, func() {
				ln.Close()
				cmu.Lock()
				defer cmu.Unlock()
				for _, c := range conns {
					c.Close()
				}
			}, func() int {
				cmu.Lock()
				defer cmu.Unlock()
				return len(conns)
			}
	}
	dead, kill, deadAccepted := listen()
	paused, stopPaused, pausedAccepted := listen()
	defer stopPaused()
	never, _, _ := listen()
	neverAddr := never.Addr().String()
	never.Close()
	member := func(id, addr string) discovery.Member {
		return discovery.Member{ID: id, Address: addr, Meta: map[string]string{metaLease: id + "~1"}}
	}
	ctx := context.Background()
	w.update(ctx, []discovery.Member{member("self", "127.0.0.1:1"), member("dead", dead.Addr().String()),
		member("paused", paused.Addr().String()), member("never", neverAddr)})
	// The watches connect: the ports of dead and paused have accepted them.
	testenv.Eventually(t, 5*time.Second, func() error {
		if d, p := deadAccepted(), pausedAccepted(); d == 0 || p == 0 {
			return fmt.Errorf("connections accepted: dead %d, paused %d; want a watch's at each", d, p)
		}
		return nil
	})
	kill()
	testenv.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if buried["dead~1"] == 0 {
			return fmt.Errorf("the killed peer is not buried yet: %v", buried)
		}
		return nil
	})
	// A deliberate negative-check window: no second burial of dead, and none
	// of paused or never, comes within it.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if buried["dead~1"] != 1 || len(buried) != 1 {
		t.Fatalf("buried %v; want the killed peer once and no other", buried)
	}
}
