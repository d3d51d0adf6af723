package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
)

// Fakes of what the health check reads; each test sets the parts it needs.
type fakeLease struct{ valid bool }

func (f fakeLease) Valid() bool { return f.valid }
func (f fakeLease) Remaining() time.Duration {
	if f.valid {
		return time.Second
	}
	return 0
}

type fakeOwnership struct{ step stepDown }

func (f fakeOwnership) mayOwn() stepDown                   { return f.step }
func (fakeOwnership) noteConsul(bool)                      {}
func (fakeOwnership) claimCounts() (int64, int64)          { return 2, 5 }
func (fakeOwnership) burials() int64                       { return 1 }
func (f fakeOwnership) withStep(s stepDown) ownershipState { f.step = s; return f }

type fakeGrants map[int]lease.Grant

func (f fakeGrants) snapshot() map[int]lease.Grant { return f }

type fakeDepth struct {
	depth map[int]int64
	err   error
}

func (f fakeDepth) Depth(context.Context, []int) (map[int]int64, error) { return f.depth, f.err }

type fakePlugins struct {
	degraded bool
	why      string
}

func (fakePlugins) Plugins() []string          { return []string{"donations@1.0.0"} }
func (f fakePlugins) Degraded() (bool, string) { return f.degraded, f.why }
func (fakePlugins) Restarts() int64            { return 3 }

type fakeWork struct{ last time.Time }

func (f fakeWork) lastRound() time.Time            { return f.last }
func (fakeWork) counts() (committed, fenced int64) { return 40, 1 }

// TestHealthCheck: the check passes while the worker can work, goes
// critical when it cannot (draining, no lease, stalled loop), and says
// what a person at the Consul UI needs either way; degraded plugins and an
// unreadable queue depth are reported without taking the worker out.
func TestHealthCheck(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	base := func() *health {
		return &health{
			cfg: cfg, log: slog.New(slog.DiscardHandler),
			lease: fakeLease{valid: true}, own: fakeOwnership{},
			grants:  fakeGrants{1: {Epoch: 3, Nonce: "a"}, 2: {Epoch: 1, Nonce: "b"}},
			store:   fakeDepth{depth: map[int]int64{1: 3, 2: 5}},
			plugins: fakePlugins{}, work: fakeWork{last: time.Now()},
		}
	}
	cases := []struct {
		name   string
		change func(h *health)
		status discovery.Status
		says   []string
	}{
		{"working", func(*health) {}, discovery.StatusPassing,
			[]string{"lease ok", "owns 2 partitions", "queue lag 8 jobs (most in p2: 5)", "plugins donations@1.0.0 (3 restarts)",
				"committed 40, fenced 1", "2 takeovers", "5 handoffs", "refused port: 1"}},
		{"draining", func(h *health) { h.own = fakeOwnership{}.withStep(stepDraining) }, discovery.StatusCritical,
			[]string{"draining: partitions handed off"}},
		{"lease lost", func(h *health) {
			h.lease = fakeLease{}
			h.own = fakeOwnership{}.withStep(stepNoLease)
		}, discovery.StatusCritical, []string{"lease NOT held"}},
		{"Consul lost", func(h *health) { h.own = fakeOwnership{}.withStep(stepConsulOut) }, discovery.StatusCritical,
			[]string{"stepped down"}},
		{"stalled loop", func(h *health) { h.work = fakeWork{last: time.Now().Add(-2 * cfg.CheckTTL)} }, discovery.StatusCritical,
			[]string{"job loop stalled"}},
		{"degraded plugins", func(h *health) { h.plugins = fakePlugins{degraded: true, why: "5 restarts in 1m"} }, discovery.StatusPassing,
			[]string{"plugins DEGRADED: 5 restarts in 1m"}},
		{"depth unreadable", func(h *health) { h.store = fakeDepth{err: errors.New("i/o timeout")} }, discovery.StatusPassing,
			[]string{"queue lag unknown (i/o timeout)"}},
		{"owns nothing", func(h *health) { h.grants = fakeGrants{} }, discovery.StatusPassing,
			[]string{"owns 0 partitions", "queue lag n/a"}},
	}
	for _, c := range cases {
		h := base()
		c.change(h)
		status, out := h.check(context.Background())
		if status != c.status {
			t.Errorf("%s: status %s, want %s (%s)", c.name, status, c.status, out)
		}
		for _, want := range c.says {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output %q does not say %q", c.name, out, want)
			}
		}
	}
}
