package worker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// statusEvents is how many of the last cluster events a cluster status
// shows.
const statusEvents = 8

// reporter tells what this worker and the cluster look like from here:
// the Status and Locate RPCs, the Prometheus source and the Consul meta.
// It only reads the other components.
type reporter struct {
	cfg   Config
	store interface {
		Depth(ctx context.Context, parts []int) (map[int]int64, error)
		Backlogs(ctx context.Context, parts []int) (map[int]store.Backlog, error)
		OldestOutbox(ctx context.Context, parts []int) (time.Time, error)
	}
	// events, when set, reads the last cluster events for the status.
	events interface {
		RecentEvents(ctx context.Context, n int64) ([]store.TopicMessage, error)
	}
	registry interface {
		Healthy(ctx context.Context) ([]discovery.Member, error)
	}
	holders interface {
		HoldersOf(ctx context.Context, parts []int) (map[int]lease.Holder, error)
	}
	peers    *peer.Pool
	grants   interface{ snapshot() map[int]lease.Grant }
	view     *membership
	exec     *executor
	own      *ownership
	lease    interface{ Remaining() time.Duration }
	handlers Handlers
	metrics  *workerMetrics // nil unless metrics are served
}

// memberStatus describes this worker: its partitions with their grants
// and depths, its counters, breakers, plugins and lease.
func (r *reporter) memberStatus(ctx context.Context) (*workerpb.MemberStatus, error) {
	owned := r.grants.snapshot()
	parts := make([]int, 0, len(owned))
	for p := range owned {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	depth, err := r.store.Depth(ctx, parts)
	if err != nil {
		return nil, err
	}
	committed, fenced := r.exec.counts()
	retried, dead := r.exec.failures()
	ms := &workerpb.MemberStatus{Id: r.cfg.ID, Address: r.cfg.Advertise, Plugins: r.handlers.Plugins(),
		Committed: committed, Fenced: fenced, Retried: retried, DeadLettered: dead, Breakers: r.breakerStates()}
	ms.Draining = r.own.draining.Load()
	ms.LeaseRemainingMs = max(r.lease.Remaining(), 0).Milliseconds()
	if d, ok := r.handlers.(interface{ Degraded() (bool, string) }); ok {
		ms.Degraded, _ = d.Degraded()
	}
	if rs, ok := r.handlers.(interface{ Restarts() int64 }); ok {
		ms.PluginRestarts = rs.Restarts()
	}
	ms.PluginInfo = pluginInfo(r.handlers)
	for _, p := range parts {
		ms.Partitions = append(ms.Partitions, &workerpb.PartitionStatus{Partition: int32(p), Epoch: owned[p].Epoch, Depth: depth[p]})
	}
	return ms, nil
}

// clusterStatus asks every healthy member for its status, through the
// per-peer breakers so a dead peer answers fast, and adds the cluster's
// total queue depth.
func (r *reporter) clusterStatus(ctx context.Context) (*workerpb.StatusResponse, error) {
	resp := &workerpb.StatusResponse{Partitions: int32(r.cfg.routing().Partitions())}
	if v := r.cfg.routing().Load(); v.Resharding() {
		resp.ReshardFrom = int32(v.P)
		for _, d := range v.Done {
			if d {
				resp.ReshardSplit++
			}
		}
	}
	members, err := r.registry.Healthy(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	all := make([]int, r.cfg.routing().Partitions())
	for p := range all {
		all[p] = p
	}
	depth, err := r.store.Depth(ctx, all)
	if err != nil {
		return nil, err
	}
	for _, d := range depth {
		resp.TotalDepth += d
	}
	resp.Members = make([]*workerpb.MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := &workerpb.MemberStatus{Id: m.ID, Address: m.Address}
			err := r.peers.Call(ctx, m.Address, func(ctx context.Context, c workerpb.WorkerClient) error {
				got, err := c.Status(ctx, &workerpb.StatusRequest{})
				if err == nil && len(got.Members) == 1 {
					ms = got.Members[0]
					ms.Address = m.Address
				}
				return err
			})
			if err != nil {
				ms.Error = err.Error()
			}
			resp.Members[i] = ms
		}()
	}
	wg.Wait()
	if r.events != nil {
		// Best effort: a status without its events is still a status.
		if evs, err := r.events.RecentEvents(ctx, statusEvents); err == nil {
			for _, e := range evs {
				resp.RecentEvents = append(resp.RecentEvents, &workerpb.TopicMessage{Topic: e.Topic, Partition: -1, Id: e.ID, Message: e.Message})
			}
		}
	}
	return resp, nil
}

// locate says where keys live: their partition, the worker holding the
// partition's claim in Redis with its epoch, and the owner this worker's
// ring names (the two differ while a partition moves).
func (r *reporter) locate(ctx context.Context, keys []string) ([]*workerpb.Location, error) {
	parts := make([]int, len(keys))
	for i, k := range keys {
		if err := validateKey(k); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		parts[i] = r.cfg.routing().PartitionOf(k)
	}
	holders, err := r.holders.HoldersOf(ctx, parts)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "locate: %v", err)
	}
	ring := r.view.current()
	out := make([]*workerpb.Location, len(keys))
	for i, k := range keys {
		p := parts[i]
		h := holders[p]
		loc := &workerpb.Location{Key: k, Partition: int32(p), Epoch: h.Epoch, Owner: lease.WorkerID(h.Token)}
		loc.OwnerAddress = r.view.addressOf(loc.Owner)
		if ring != nil {
			loc.RingOwner = ring.OwnerOf(p)
		}
		out[i] = loc
	}
	return out, nil
}

// breakerStates is this worker's view of its peers, for Status.
func (r *reporter) breakerStates() map[string]string {
	states := r.peers.Breakers().States()
	out := make(map[string]string, len(states))
	for _, s := range states {
		out[s.Peer] = s.State.String()
	}
	return out
}

// metricsSource reads counters and gauges the worker keeps anyway, at
// scrape time.
func (r *reporter) metricsSource() metrics.Source {
	src := metrics.Source{
		Fenced:          r.exec.fenced.Load,
		Moves:           r.own.stats.moves.Load,
		PartitionsOwned: func() int { return len(r.grants.snapshot()) },
		LeaseRemaining:  r.lease.Remaining,
		Backlog: func(ctx context.Context) (metrics.Backlog, error) {
			var out metrics.Backlog
			owned := r.grants.snapshot()
			if len(owned) == 0 {
				return out, nil
			}
			parts := make([]int, 0, len(owned))
			for p := range owned {
				parts = append(parts, p)
			}
			bs, err := r.store.Backlogs(ctx, parts)
			if err != nil {
				return out, err
			}
			for _, b := range bs {
				out.Jobs += b.Depth()
				out.Outbox += b.Outbox
				out.Dead += b.Dead
			}
			if out.Outbox > 0 {
				out.OldestOutbox, err = r.store.OldestOutbox(ctx, parts)
			}
			return out, err
		},
		Breakers: func() []metrics.PeerBreaker {
			states := r.peers.Breakers().States()
			out := make([]metrics.PeerBreaker, len(states))
			for i, s := range states {
				out[i] = metrics.PeerBreaker{Peer: s.Peer, State: breakerLevel(s.State)}
			}
			return out
		},
	}
	// The plugin host reports restarts if it counts them.
	if rs, ok := r.handlers.(interface{ Restarts() int64 }); ok {
		src.PluginRestarts = rs.Restarts
	}
	return src
}

func breakerLevel(s breaker.State) int {
	switch s {
	case breaker.StateHalfOpen:
		return 1
	case breaker.StateOpen:
		return 2
	}
	return 0
}

// metricsAddr is the advertised /metrics address, "" when not served.
func (r *reporter) metricsAddr() string {
	if r.metrics == nil {
		return ""
	}
	return r.metrics.addr
}

// serviceMeta is the Consul service meta a person sees in the UI and
// Prometheus' Consul discovery relabels on, and the handler set peers
// read: which handlers this worker serves, from which plugin versions.
func (r *reporter) serviceMeta() (map[string]string, error) {
	meta, err := localSet(r.handlers.Handlers()).Meta()
	if err != nil {
		return nil, fmt.Errorf("worker: publish the handler set in Consul: %w", err)
	}
	meta["partitions"] = fmt.Sprint(r.cfg.routing().Partitions())
	meta["version"] = Version
	if len(r.cfg.Groups) > 0 {
		meta[metaGroups] = strings.Join(r.cfg.Groups, ",")
	}
	if a := r.metricsAddr(); a != "" {
		meta["metrics"] = a
		scheme := "http://"
		if r.cfg.MetricsTLS {
			scheme = "https://"
		}
		meta["ui"] = scheme + a + "/ui/"
	}
	return meta, nil
}

// serviceTags lets a scrape config select workers that serve metrics.
func (r *reporter) serviceTags() []string {
	tags := []string{"corral-worker"}
	if r.metricsAddr() != "" {
		tags = append(tags, "metrics")
	}
	return append(tags, groupTags(r.cfg.Groups)...)
}
