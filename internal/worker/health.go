package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
)

// health drives the worker's Consul check and says what it is doing.
type health struct {
	cfg      Config
	log      *slog.Logger
	registry interface {
		SetHealth(ctx context.Context, s discovery.Status, output string) error
	}
	lease interface {
		Valid() bool
		Remaining() time.Duration
	}
	own    ownershipState
	grants interface{ snapshot() map[int]lease.Grant }
	store  interface {
		Depth(ctx context.Context, parts []int) (map[int]int64, error)
	}
	plugins interface{ Plugins() []string }
	work    workState
}

// ownershipState is what health reads of the ownership controller.
type ownershipState interface {
	mayOwn() stepDown
	noteConsul(ok bool)
	claimCounts() (takeovers, handoffs int64)
	burials() int64
}

// workState is what health reads of the executor.
type workState interface {
	lastRound() time.Time
	counts() (committed, fenced int64)
}

// run drives the Consul TTL check from the work itself: it passes
// only while the lease is trusted and the executor loop keeps turning, and
// its output says what a person looking at the Consul UI needs. When Consul
// cannot take the update for longer than the check TTL, the worker steps
// down (see noteConsul).
func (h *health) run(ctx context.Context) {
	every := h.cfg.CheckTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		status, output := h.check(ctx)
		cctx, cancel := context.WithTimeout(ctx, every)
		err := h.registry.SetHealth(cctx, status, output)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.own.noteConsul(err == nil)
		if err != nil {
			h.log.Warn("cannot update Consul check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// health is the check's state and output: lease, partitions owned, queue
// lag, plugin health, counters.
func (h *health) check(ctx context.Context) (discovery.Status, string) {
	status := discovery.StatusPassing
	var problems []string
	critical := func(msg string) {
		status = discovery.StatusCritical
		problems = append(problems, msg)
	}

	owned := h.grants.snapshot()
	leaseState := fmt.Sprintf("lease ok (%v left)", h.lease.Remaining().Round(time.Millisecond))
	if !h.lease.Valid() {
		leaseState = "lease NOT held"
	}
	switch h.own.mayOwn() {
	case stepDraining:
		critical("draining: partitions handed off, claiming none")
	case stepNoLease:
		critical("lease NOT held (Redis unreachable or the worker stalled); claiming none")
	case stepConsulOut:
		critical("Consul did not take check updates for longer than the check TTL; stepped down")
	}
	if stall := time.Since(h.work.lastRound()); stall > h.cfg.CheckTTL {
		critical(fmt.Sprintf("job loop stalled for %v", stall.Round(time.Millisecond)))
	}

	lag := "queue lag n/a"
	if len(owned) > 0 {
		parts := make([]int, 0, len(owned))
		for p := range owned {
			parts = append(parts, p)
		}
		sort.Ints(parts)
		dctx, cancel := context.WithTimeout(ctx, h.cfg.CheckTTL/6)
		depth, err := h.store.Depth(dctx, parts)
		cancel()
		if err != nil {
			// Reported only: the lease says whether Redis is reachable.
			lag = "queue lag unknown (" + err.Error() + ")"
		} else {
			var total, worst int64
			worstP := -1
			for p, d := range depth {
				total += d
				if d > worst {
					worst, worstP = d, p
				}
			}
			lag = fmt.Sprintf("queue lag %d jobs", total)
			if worstP >= 0 {
				lag += fmt.Sprintf(" (most in p%d: %d)", worstP, worst)
			}
		}
	}

	plugins := "plugins " + strings.Join(h.plugins.Plugins(), ",")
	// Degraded plugins are reported but keep the check passing: a poison
	// job that crashes its plugin would otherwise chase its partition from
	// worker to worker, taking each out of the ring.
	if d, ok := h.plugins.(interface{ Degraded() (bool, string) }); ok {
		if bad, why := d.Degraded(); bad {
			problems = append(problems, "plugins DEGRADED: "+why)
		}
	}
	if r, ok := h.plugins.(interface{ Restarts() int64 }); ok {
		plugins += fmt.Sprintf(" (%d restarts)", r.Restarts())
	}

	committed, fenced := h.work.counts()
	takeovers, handoffs := h.own.claimCounts()
	out := fmt.Sprintf("%s; owns %d partitions; %s; %s; committed %d, fenced %d; claims: %d takeovers from dead holders, %d handoffs; dead peers found by their refused port: %d",
		leaseState, len(owned), lag, plugins, committed, fenced, takeovers, handoffs, h.own.burials())
	if len(problems) > 0 {
		out = strings.Join(problems, "; ") + " | " + out
	}
	return status, out
}
