package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is returned without calling the peer when its breaker is open (or
// half-open with its probe already in flight).
var ErrOpen = errors.New("breaker: circuit open")

// Config sets how breakers trip and recover.
type Config struct {
	// Timeout is the deadline of one call, applied unless the caller's
	// context ends sooner.
	Timeout time.Duration
	// FailureThreshold consecutive failures open the breaker.
	FailureThreshold uint32
	// OpenTimeout is how long an open breaker refuses calls before it lets
	// HalfOpenRequests probes through.
	OpenTimeout      time.Duration
	HalfOpenRequests uint32
	// Interval clears the failure counts of a closed breaker; 0 never does.
	Interval time.Duration
	// IsSuccessful says which errors do not count against the peer (for
	// example "invalid argument" replies). Nil counts every error.
	IsSuccessful func(error) bool
	// Logger receives state changes; nil means slog.Default().
	Logger *slog.Logger
	// OnStateChange, if set, hears of every state change of a peer's
	// breaker, on a goroutine of its own.
	OnStateChange func(peer string, from, to State)
}

// DefaultConfig returns breakers that open after 5 consecutive failures and
// probe again after a second; calls time out after 2 s.
func DefaultConfig() Config {
	return Config{Timeout: 2 * time.Second, FailureThreshold: 5, OpenTimeout: time.Second, HalfOpenRequests: 1}
}

// Validate explains what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("call timeout must be positive, got %s", c.Timeout))
	}
	if c.FailureThreshold == 0 {
		errs = append(errs, errors.New("failure threshold must be at least 1"))
	}
	if c.OpenTimeout <= 0 {
		errs = append(errs, fmt.Errorf("open timeout must be positive, got %s", c.OpenTimeout))
	}
	if c.HalfOpenRequests == 0 {
		errs = append(errs, errors.New("half-open requests must be at least 1"))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval must not be negative, got %s", c.Interval))
	}
	return errors.Join(errs...)
}

// State of one peer's breaker.
type State = gobreaker.State

// The breaker states.
const (
	StateClosed   = gobreaker.StateClosed
	StateHalfOpen = gobreaker.StateHalfOpen
	StateOpen     = gobreaker.StateOpen
)

// Set holds one breaker per peer, created on first use.
type Set struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	breakers map[string]*gobreaker.CircuitBreaker[struct{}]
}

// NewSet returns an empty set.
func NewSet(cfg Config) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("breaker: invalid config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Set{cfg: cfg, log: log, breakers: map[string]*gobreaker.CircuitBreaker[struct{}]{}}, nil
}

func (s *Set) get(peer string) *gobreaker.CircuitBreaker[struct{}] {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cb, ok := s.breakers[peer]; ok {
		return cb
	}
	threshold := s.cfg.FailureThreshold
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        peer,
		MaxRequests: s.cfg.HalfOpenRequests,
		Interval:    s.cfg.Interval,
		Timeout:     s.cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		// Runs under the breaker's own lock: log only, never call back in.
		OnStateChange: func(name string, from, to gobreaker.State) {
			s.log.Info("peer breaker changed state", "peer", name, "from", from.String(), "to", to.String())
			if f := s.cfg.OnStateChange; f != nil {
				go f(name, from, to) // not under the breaker's lock
			}
		},
		IsSuccessful: s.cfg.IsSuccessful,
		// A caller giving up says nothing about the peer.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	s.breakers[peer] = cb
	return cb
}

// Do runs fn for peer through the peer's breaker, with a context whose
// deadline is at most Timeout away. It returns ErrOpen (wrapped with the
// peer) without running fn when the breaker refuses the call.
func (s *Set) Do(ctx context.Context, peer string, fn func(ctx context.Context) error) error {
	cb := s.get(peer)
	_, err := cb.Execute(func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		return struct{}{}, fn(ctx)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%w for peer %s", ErrOpen, peer)
	}
	return err
}

// State returns peer's breaker state; a peer never called is closed.
func (s *Set) State(peer string) State {
	s.mu.Lock()
	cb, ok := s.breakers[peer]
	s.mu.Unlock()
	if !ok {
		return StateClosed
	}
	return cb.State()
}

// PeerState is one row of States.
type PeerState struct {
	Peer                string
	State               State
	Requests, Failures  uint32
	ConsecutiveFailures uint32
}

// States lists every known peer's breaker, sorted by peer.
func (s *Set) States() []PeerState {
	s.mu.Lock()
	cbs := make(map[string]*gobreaker.CircuitBreaker[struct{}], len(s.breakers))
	for p, cb := range s.breakers {
		cbs[p] = cb
	}
	s.mu.Unlock()
	out := make([]PeerState, 0, len(cbs))
	for p, cb := range cbs {
		c := cb.Counts()
		out = append(out, PeerState{Peer: p, State: cb.State(), Requests: c.Requests,
			Failures: c.TotalFailures, ConsecutiveFailures: c.ConsecutiveFailures})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// Forget drops a peer's breaker, for a peer that left the cluster.
func (s *Set) Forget(peer string) {
	s.mu.Lock()
	delete(s.breakers, peer)
	s.mu.Unlock()
}
