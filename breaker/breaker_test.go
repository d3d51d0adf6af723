package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
)

var errDown = errors.New("peer down")

func fastConfig() Config {
	c := DefaultConfig()
	c.Timeout = 50 * time.Millisecond
	c.FailureThreshold = 3
	c.OpenTimeout = 100 * time.Millisecond
	return c
}

func TestOpensAfterThresholdAndFailsFast(t *testing.T) {
	t.Parallel()
	s, err := NewSet(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	fail := func(context.Context) error { calls.Add(1); return errDown }
	for range 3 {
		if err := s.Do(context.Background(), "a", fail); !errors.Is(err, errDown) {
			t.Fatalf("Do = %v, want the peer's error", err)
		}
	}
	if st := s.State("a"); st != StateOpen {
		t.Fatalf("after 3 failures state is %s, want open", st)
	}
	err = s.Do(context.Background(), "a", fail)
	if !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), "peer a") {
		t.Fatalf("Do on an open breaker = %v, want ErrOpen naming the peer", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("open breaker called the peer: %d calls", calls.Load())
	}
	// Other peers are unaffected.
	if err := s.Do(context.Background(), "b", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("peer b: %v", err)
	}
}

func TestHalfOpenProbeCloses(t *testing.T) {
	t.Parallel()
	s, _ := NewSet(fastConfig())
	for range 3 {
		s.Do(context.Background(), "a", func(context.Context) error { return errDown })
	}
	testenv.Eventually(t, 2*time.Second, func() error {
		if st := s.State("a"); st != StateHalfOpen {
			return fmt.Errorf("breaker is %s past its open timeout, want half-open", st)
		}
		return nil
	})
	if err := s.Do(context.Background(), "a", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := s.State("a"); st != StateClosed {
		t.Fatalf("after a good probe state is %s, want closed", st)
	}
}

func TestDeadlineApplied(t *testing.T) {
	t.Parallel()
	s, _ := NewSet(fastConfig())
	err := s.Do(context.Background(), "slow", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow peer: %v, want deadline exceeded", err)
	}
	states := s.States()
	if len(states) != 1 || states[0].Failures != 1 {
		t.Fatalf("a timeout must count as a failure: %+v", states)
	}
}

func TestIsSuccessfulAndCancel(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	errBadInput := errors.New("bad input")
	cfg.IsSuccessful = func(err error) bool { return err == nil || errors.Is(err, errBadInput) }
	s, _ := NewSet(cfg)
	for range 10 {
		s.Do(context.Background(), "a", func(context.Context) error { return errBadInput })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		s.Do(ctx, "a", func(ctx context.Context) error { return ctx.Err() })
	}
	if st := s.State("a"); st != StateClosed {
		t.Fatalf("request errors and caller cancels opened the breaker: %s", st)
	}
	s.Forget("a")
	if len(s.States()) != 0 {
		t.Fatal("Forget kept the peer")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if _, err := NewSet(Config{}); err == nil || !strings.Contains(err.Error(), "call timeout must be positive") {
		t.Fatalf("zero config: %v", err)
	}
}

// TestStateChangesAreTold: OnStateChange hears a peer's breaker open.
func TestStateChangesAreTold(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	told := make(chan State, 4)
	cfg.OnStateChange = func(peer string, _, to State) {
		if peer == "p1" {
			told <- to
		}
	}
	s, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range cfg.FailureThreshold {
		s.Do(context.Background(), "p1", func(context.Context) error { return errDown })
	}
	select {
	case st := <-told:
		if st != StateOpen {
			t.Fatalf("told %v, want open", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the breaker opened untold")
	}
}
