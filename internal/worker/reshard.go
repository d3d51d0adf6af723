package worker

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/routing"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// layoutEvery is how often a worker reads the partition layout: how soon
// it learns of a reshard, and of each partition's split.
const layoutEvery = 250 * time.Millisecond

// splitsAtOnce bounds the splits a worker runs at once.
const splitsAtOnce = 4

// reshardStore is what resharding needs of the store.
type reshardStore interface {
	Layout(ctx context.Context) (routing.View, error)
	FreezeForSplit(ctx context.Context, p int, grant lease.Grant, n int) (bool, error)
	SplitPartition(ctx context.Context, p int, grant lease.Grant, n int) (store.SplitStats, error)
	NoteSplitDone(ctx context.Context, p, n int) (bool, error)
	PrepareReshard(ctx context.Context, known []string) (int, int, error)
}

// resharder keeps the worker's routing table current and splits the
// partitions it owns while a reshard is under way (see internal/routing
// and docs/resharding.md): freeze, suspend the partition once its batch in
// flight has ended, copy what moves to its children, mark it split.
type resharder struct {
	self   string
	log    *slog.Logger
	routes *routing.Table
	store  reshardStore
	grants *grants
	// changed is called when the number of partitions changes (the ring
	// must place the children).
	changed func()
	events  *clusterEvents
	// entities, when set, lists the entity types the handlers declare.
	entities func() []string

	mu        sync.Mutex
	splitting map[int]bool
	slots     chan struct{} // splits running at once (splitsAtOnce)

	splits       atomic.Int64 // partitions this worker split
	longestPause atomic.Int64 // ms, the longest a partition of ours was frozen
}

func (r *resharder) run(ctx context.Context) {
	t := time.NewTicker(layoutEvery)
	defer t.Stop()
	for {
		r.refresh(ctx)
		v := r.routes.Load()
		// A partition left suspended after its split (the layout could not
		// be read then) runs again once the layout shows it split.
		r.grants.resumeIf(func(p int) bool { return !r.busy(p) && (!v.Resharding() || p < len(v.Done) && v.Done[p]) })
		if v.Resharding() && !v.Ready {
			// A cluster that ran an older release may hold states its
			// splits cannot find yet: the owner of partition 0 scans for
			// them once, and the splits wait for it.
			if _, ok := r.grants.grantOf(0); ok && r.begin(-1) {
				go r.prepare(ctx)
			}
		}
		if v.Resharding() && v.Ready {
			for p, grant := range r.grants.snapshot() {
				if p < v.P && !v.Done[p] && r.begin(p) {
					go r.split(ctx, p, grant, v.N)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh reads the layout and installs it.
func (r *resharder) refresh(ctx context.Context) {
	v, err := r.store.Layout(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("reading the partition layout failed", "err", err)
		}
		return
	}
	before := r.routes.Load().Partitions()
	if r.routes.Store(v) {
		if v.Partitions() != before {
			r.log.Info("partition count changed", "partitions", v.Partitions(), "was", before, "resharding", v.Resharding())
			if r.changed != nil {
				r.changed()
			}
		}
	}
}

func (r *resharder) begin(p int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.splitting == nil {
		r.splitting = map[int]bool{}
	}
	if r.splitting[p] {
		return false
	}
	r.splitting[p] = true
	return true
}

// prepare runs store.PrepareReshard (see run).
func (r *resharder) prepare(ctx context.Context) {
	defer r.end(-1)
	start := time.Now()
	var known []string
	if r.entities != nil {
		known = r.entities()
	}
	types, indexed, err := r.store.PrepareReshard(ctx, known)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("looking for unindexed entity states before the splits failed; trying again", "err", err)
		}
		return
	}
	r.log.Info("reshard prepared: every entity state indexed", "entity_types", types, "keys_indexed", indexed, "took", time.Since(start).Round(time.Millisecond))
	r.refresh(ctx)
}

// busy reports whether a split of p is running here.
func (r *resharder) busy(p int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.splitting[p]
}

func (r *resharder) end(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.splitting, p)
}

// split splits partition p, owned under grant, into its children under n
// partitions. Any failure leaves p frozen or not, as it was, for the next
// round (here or at p's next owner) to go on from.
func (r *resharder) split(ctx context.Context, p int, grant lease.Grant, n int) {
	defer r.end(p)
	// A few splits at a time: a partition is frozen only while its own
	// copy runs, not while every other one's does too.
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return
	}
	if g, ok := r.grants.grantOf(p); !ok || g != grant {
		return // given up while it waited
	}
	log := r.log.With("partition", p, "to", n)
	done, err := r.store.FreezeForSplit(ctx, p, grant, n)
	if err != nil {
		if !isFenced(err) && ctx.Err() == nil {
			log.Warn("freezing a partition for its split failed", "err", err)
		}
		return
	}
	if !done {
		frozen := time.Now()
		// Nothing is added to a frozen partition's queue; once the batch
		// in flight has ended nothing is taken from it either, and what
		// it holds moves with the rest.
		r.grants.suspend(p)
		if g, ok := r.grants.grantOf(p); !ok || g != grant {
			r.grants.resume(p)
			return
		}
		suspended := time.Now()
		st, err := r.store.SplitPartition(ctx, p, grant, n)
		if err != nil {
			r.grants.resume(p)
			if !isFenced(err) && ctx.Err() == nil {
				log.Warn("splitting a partition failed; trying again", "err", err)
			}
			return
		}
		pause := time.Since(frozen)
		r.splits.Add(1)
		for {
			old := r.longestPause.Load()
			if pause.Milliseconds() <= old || r.longestPause.CompareAndSwap(old, pause.Milliseconds()) {
				break
			}
		}
		log.Info("partition split", "queued", st.Queued, "states", st.States, "delayed", st.Delayed, "parked", st.Parked, "waiting", st.Waiting,
			"schedules", st.Schedules, "records", st.Records, "cancels", st.Cancels, "pause", pause.Round(time.Millisecond),
			"batch_wait", suspended.Sub(frozen).Round(time.Millisecond), "copy", time.Since(suspended).Round(time.Millisecond))
		if r.events != nil {
			r.events.tell(store.ClusterEvent{Kind: "partition.split", Partition: &p, Detail: "into " + strconv.Itoa(n) + " partitions", Member: r.self})
		}
	}
	// p stays suspended until this worker routes by its split: a direct
	// call whose plugin ran across the split checks the routing before it
	// commits, and must find its key moved.
	ended, err := r.store.NoteSplitDone(ctx, p, n)
	if err != nil {
		log.Warn("recording a partition's split failed; trying again", "err", err)
		return
	}
	r.refresh(ctx)
	if v := r.routes.Load(); v.P != n && !(v.Resharding() && v.Done[p]) {
		log.Warn("the layout read after a split does not show it yet; trying again")
		return
	}
	r.grants.resume(p)
	if ended {
		log.Info("reshard done", "partitions", n)
		if r.events != nil {
			r.events.tell(store.ClusterEvent{Kind: "reshard.done", Detail: strconv.Itoa(n) + " partitions", Member: r.self})
		}
	}
}

// Reshard starts a reshard to req.Partitions (a multiple of P) and
// reports it, or only reports with req.Partitions = 0.
func (a *API) Reshard(ctx context.Context, req *workerpb.ReshardRequest) (*workerpb.ReshardResponse, error) {
	n := int(req.Partitions)
	if n < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "reshard: %d partitions; give a positive multiple of the current count", n)
	}
	if n > 0 {
		cur := a.reshard.routes.Load()
		switch {
		case n > sharding.MaxPartitions:
			return nil, status.Errorf(codes.InvalidArgument, "reshard: %d partitions is more than the most a cluster may have (%d)", n, sharding.MaxPartitions)
		case !cur.Resharding() && (n < cur.P || n%cur.P != 0):
			return nil, status.Errorf(codes.InvalidArgument, "reshard: %d is not a multiple of the current %d partitions: a partition can only split into several, each key going to one of them", n, cur.P)
		}
		if _, err := a.store.StartReshard(ctx, n); err != nil {
			switch {
			case errors.Is(err, store.ErrReshardBusy):
				return nil, status.Errorf(codes.FailedPrecondition, "reshard: %v; wait for it to end (coordinator reshard follows it)", err)
			case errors.Is(err, store.ErrReshardTooSoon):
				return nil, status.Errorf(codes.FailedPrecondition, "reshard: %v", err)
			case strings.Contains(err.Error(), "multiple"):
				return nil, status.Errorf(codes.InvalidArgument, "reshard: %v", err)
			}
			return nil, status.Errorf(codes.Unavailable, "reshard: %v", err)
		}
		a.reshard.refresh(ctx)
	}
	info, err := a.store.Reshard(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reshard: %v", err)
	}
	return &workerpb.ReshardResponse{Partitions: int32(info.Partitions), To: int32(info.To), Split: int32(info.Split),
		Previous: int32(info.Previous), LongestPauseMs: a.reshard.longestPause.Load(), StartedMs: info.StartedMs, EndedMs: info.EndedMs}, nil
}
