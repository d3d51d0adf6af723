package worker

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/store"
)

// eventTimeout bounds the append of one cluster event.
const eventTimeout = 2 * time.Second

// clusterEvents appends what this worker sees happen to the cluster to
// the events stream (coordinator watch --cluster, coordinator status), in
// the background: an event is told, never waited for, and one Redis
// cannot take is logged and dropped.
type clusterEvents struct {
	self  string
	log   *slog.Logger
	store interface {
		PublishEvent(ctx context.Context, e store.ClusterEvent) error
	}
	queue chan store.ClusterEvent

	members map[string]bool // the members of the last snapshot; only observe uses it
}

func newClusterEvents(self string, log *slog.Logger, st interface {
	PublishEvent(ctx context.Context, e store.ClusterEvent) error
}) *clusterEvents {
	return &clusterEvents{self: self, log: log, store: st, queue: make(chan store.ClusterEvent, 256)}
}

// tell queues e; with the queue full it is dropped.
func (ce *clusterEvents) tell(e store.ClusterEvent) {
	e.ByWorker = ce.self
	select {
	case ce.queue <- e:
	default:
		ce.log.Warn("cluster event dropped: the queue is full", "kind", e.Kind)
	}
}

// run appends queued events until ctx ends, then what is still queued.
func (ce *clusterEvents) run(ctx context.Context) {
	send := func(e store.ClusterEvent) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
		defer cancel()
		if err := ce.store.PublishEvent(sctx, e); err != nil {
			ce.log.Warn("cluster event not recorded", "kind", e.Kind, "err", err)
		}
	}
	for {
		select {
		case e := <-ce.queue:
			send(e)
		case <-ctx.Done():
			for {
				select {
				case e := <-ce.queue:
					send(e)
				default:
					return
				}
			}
		}
	}
}

// observe tells the members that joined and left since the last
// snapshot. Every worker sees the same snapshots, so only the first
// member by id tells, and each change is told once while views agree.
func (ce *clusterEvents) observe(snap discovery.Snapshot) {
	now := make(map[string]bool, len(snap.Members))
	var ids []string
	for _, m := range snap.Members {
		now[m.ID] = true
		ids = append(ids, m.ID)
	}
	prev := ce.members
	ce.members = now
	if prev == nil && len(ids) > 0 {
		prev = map[string]bool{} // the first snapshot: this worker's own joining is news
		for _, id := range ids {
			if id != ce.self {
				prev[id] = true
			}
		}
	}
	if len(ids) == 0 || slices.Min(ids) != ce.self {
		return
	}
	for _, id := range ids {
		if !prev[id] {
			ce.tell(store.ClusterEvent{Kind: "member.joined", Member: id})
		}
	}
	for id := range prev {
		if !now[id] {
			ce.tell(store.ClusterEvent{Kind: "member.left", Member: id})
		}
	}
}
