package worker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/corralhq/corral/discovery"
)

// healthLoop drives the Consul TTL check from the work itself: it passes
// only while the lease is trusted and the executor loop keeps turning, and
// its output says what a person looking at the Consul UI needs. When Consul
// cannot take the update for longer than the check TTL, the worker steps
// down (see noteConsul).
func (w *Worker) healthLoop(ctx context.Context) {
	every := w.cfg.CheckTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		status, output := w.health(ctx)
		cctx, cancel := context.WithTimeout(ctx, every)
		err := w.registry.SetHealth(cctx, status, output)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.own.noteConsul(err == nil)
		if err != nil {
			w.log.Warn("cannot update Consul check", "err", err)
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
func (w *Worker) health(ctx context.Context) (discovery.Status, string) {
	status := discovery.StatusPassing
	var problems []string
	critical := func(msg string) {
		status = discovery.StatusCritical
		problems = append(problems, msg)
	}

	owned := w.grants.snapshot()
	lease := fmt.Sprintf("lease ok (%v left)", w.keeper.Remaining().Round(time.Millisecond))
	if !w.keeper.Valid() {
		lease = "lease NOT held"
	}
	switch w.own.mayOwn() {
	case stepDraining:
		critical("draining: partitions handed off, claiming none")
	case stepNoLease:
		critical("lease NOT held (Redis unreachable or the worker stalled); claiming none")
	case stepConsulOut:
		critical("Consul did not take check updates for longer than the check TTL; stepped down")
	}
	if stall := time.Since(w.exec.lastRound()); stall > w.cfg.CheckTTL {
		critical(fmt.Sprintf("job loop stalled for %v", stall.Round(time.Millisecond)))
	}

	lag := "queue lag n/a"
	if len(owned) > 0 {
		parts := make([]int, 0, len(owned))
		for p := range owned {
			parts = append(parts, p)
		}
		sort.Ints(parts)
		dctx, cancel := context.WithTimeout(ctx, w.cfg.CheckTTL/6)
		depth, err := w.store.Depth(dctx, parts)
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

	plugins := "plugins " + strings.Join(w.handlers.Plugins(), ",")
	// Degraded plugins are reported but keep the check passing: a poison
	// job that crashes its plugin would otherwise chase its partition from
	// worker to worker, taking each out of the ring.
	if d, ok := w.handlers.(interface{ Degraded() (bool, string) }); ok {
		if bad, why := d.Degraded(); bad {
			problems = append(problems, "plugins DEGRADED: "+why)
		}
	}
	if r, ok := w.handlers.(interface{ Restarts() int64 }); ok {
		plugins += fmt.Sprintf(" (%d restarts)", r.Restarts())
	}

	out := fmt.Sprintf("%s; owns %d partitions; %s; %s; committed %d, fenced %d; claims: %d takeovers from dead holders, %d handoffs",
		lease, len(owned), lag, plugins, w.exec.committed.Load(), w.exec.fenced.Load(), w.own.stats.takeovers.Load(), w.own.stats.handoffs.Load())
	if len(problems) > 0 {
		out = strings.Join(problems, "; ") + " | " + out
	}
	return status, out
}
