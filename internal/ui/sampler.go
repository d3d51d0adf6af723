package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// ClusterView is what /ui/api/cluster returns: the members and one cell
// per partition.
type ClusterView struct {
	AtMs       int64        `json:"at_ms"`
	Self       string       `json:"self"`
	Partitions int          `json:"partitions"`
	TotalDepth int64        `json:"total_depth"`
	Error      string       `json:"error,omitempty"` // set when the cluster could not be read
	Members    []MemberView `json:"members"`
	Cells      []Cell       `json:"cells"`
	// Events are the cluster's last events (members joined and left,
	// partitions moved, breakers, plugin restarts and reloads), oldest
	// first, as coordinator status shows them.
	Events []EventView `json:"events"`
}

// EventView is one cluster event: when it was recorded and the event as
// the workers wrote it (JSON with a "kind").
type EventView struct {
	AtMs  int64           `json:"at_ms"`
	Event json.RawMessage `json:"event"`
}

// MemberView is one worker as the cluster page shows it.
type MemberView struct {
	ID               string            `json:"id"`
	Address          string            `json:"address"`
	Health           string            `json:"health"` // ok, draining, degraded, no lease, unreachable
	Error            string            `json:"error,omitempty"`
	LeaseRemainingMs int64             `json:"lease_remaining_ms"`
	Plugins          []PluginView      `json:"plugins"`
	Breakers         map[string]string `json:"breakers"`
	Partitions       int               `json:"partitions"`
	Committed        int64             `json:"committed"`
	Retried          int64             `json:"retried"`
	DeadLettered     int64             `json:"dead_lettered"`
	Fenced           int64             `json:"fenced"`
	PluginRestarts   int64             `json:"plugin_restarts"`
}

// PluginView is one plugin of a member.
type PluginView struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Refused string `json:"refused,omitempty"`
}

// Cell is one partition of the map.
type Cell struct {
	Partition int    `json:"partition"`
	Owner     string `json:"owner"`
	RingOwner string `json:"ring_owner"`
	Epoch     int64  `json:"epoch"`
	Depth     int64  `json:"depth"` // -1 when no reachable member reports it
}

// Sample is one second of the cluster's throughput: rates since the
// previous sample and the queue depth at the time.
type Sample struct {
	AtMs      int64   `json:"at_ms"`
	Committed float64 `json:"committed"` // jobs/s
	Retried   float64 `json:"retried"`   // jobs/s
	Dead      float64 `json:"dead"`      // jobs/s dead-lettered
	Fenced    float64 `json:"fenced"`    // commits/s refused by the fence
	Depth     int64   `json:"depth"`
	Total     int64   `json:"committed_total"` // committed by the members sampled, since each started
}

type counters struct{ committed, retried, dead, fenced int64 }

// sampler reads the cluster at most once a second while the dashboard is
// looked at, keeps the latest view and a ring of samples. It runs only
// while someone looks: a request wakes it, and it sleeps again after
// idleAfter without one, so an unwatched cluster pays nothing.
type sampler struct {
	src       Source
	self      string
	now       func() time.Time
	interval  time.Duration
	idleAfter time.Duration

	collectMu sync.Mutex // one read of the cluster at a time

	mu       sync.Mutex
	latest   *ClusterView
	ring     []Sample // oldest first, at most cap(ring)
	last     map[string]counters
	lastAt   time.Time
	seen     time.Time // last request
	running  bool
	stopped  bool
	stop     chan struct{}
	loopDone chan struct{}
}

func newSampler(src Source, self string, keep int, now func() time.Time) *sampler {
	return &sampler{src: src, self: self, now: now, interval: time.Second, idleAfter: 10 * time.Minute,
		ring: make([]Sample, 0, keep), stop: make(chan struct{})}
}

// touch records a request and starts the loop if it sleeps.
func (s *sampler) touch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = s.now()
	if s.running || s.stopped {
		return
	}
	s.running = true
	s.loopDone = make(chan struct{})
	go s.loop(s.loopDone)
}

func (s *sampler) loop(done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		idle := s.now().Sub(s.seen) > s.idleAfter
		if idle {
			s.running = false
		}
		s.mu.Unlock()
		if idle {
			return
		}
		s.collect()
	}
}

// Stop ends the loop; safe to call twice or before any request.
func (s *sampler) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	close(s.stop)
	done := s.loopDone
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// view returns the latest view, reading the cluster first when it is
// older than two intervals (the loop just woke).
func (s *sampler) view() *ClusterView {
	s.mu.Lock()
	v := s.latest
	s.mu.Unlock()
	if v == nil || s.now().Sub(time.UnixMilli(v.AtMs)) > 2*s.interval {
		return s.collect()
	}
	return v
}

func (s *sampler) samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.ring...)
}

// collect reads the cluster once, and records the view and a sample.
func (s *sampler) collect() *ClusterView {
	s.collectMu.Lock()
	defer s.collectMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	now := s.now()
	v := &ClusterView{AtMs: now.UnixMilli(), Self: s.self}
	st, err := s.src.Status(ctx)
	var holders []Holder
	if err == nil {
		holders, err = s.src.Holders(ctx)
	}
	if err != nil {
		v.Error = fmt.Sprintf("read the cluster: %v", err)
		s.mu.Lock()
		if s.latest != nil {
			// Keep showing the last map, marked stale by the error.
			v.Partitions, v.Members, v.Cells, v.TotalDepth = s.latest.Partitions, s.latest.Members, s.latest.Cells, s.latest.TotalDepth
		}
		s.latest = v
		s.mu.Unlock()
		return v
	}
	build(v, st, holders)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest = v
	s.record(now, st)
	return v
}

// build fills v from a cluster status and the partitions' holders.
func build(v *ClusterView, st *workerpb.StatusResponse, holders []Holder) {
	v.Partitions = int(st.Partitions)
	v.TotalDepth = st.TotalDepth
	v.Events = []EventView{}
	for _, e := range st.RecentEvents {
		at, _ := strconv.ParseInt(strings.SplitN(e.Id, "-", 2)[0], 10, 64)
		ev := EventView{AtMs: at, Event: json.RawMessage(e.Message)}
		if !json.Valid(e.Message) {
			ev.Event, _ = json.Marshal(map[string]string{"kind": "unreadable", "detail": string(e.Message)})
		}
		v.Events = append(v.Events, ev)
	}
	depth := map[int]int64{}
	for _, m := range st.Members {
		mv := MemberView{ID: m.Id, Address: m.Address, Error: m.Error, LeaseRemainingMs: m.LeaseRemainingMs,
			Breakers: m.Breakers, Partitions: len(m.Partitions), Committed: m.Committed, Retried: m.Retried,
			DeadLettered: m.DeadLettered, Fenced: m.Fenced, PluginRestarts: m.PluginRestarts, Health: health(m)}
		for _, p := range m.PluginInfo {
			mv.Plugins = append(mv.Plugins, PluginView{Name: p.Name, Version: p.Version, Refused: p.Refused})
		}
		if len(m.PluginInfo) == 0 {
			for _, p := range m.Plugins {
				mv.Plugins = append(mv.Plugins, PluginView{Name: p})
			}
		}
		for _, p := range m.Partitions {
			depth[int(p.Partition)] = p.Depth
		}
		v.Members = append(v.Members, mv)
	}
	v.Cells = make([]Cell, v.Partitions)
	for p := range v.Cells {
		c := Cell{Partition: p, Depth: -1}
		if p < len(holders) {
			c.Owner, c.RingOwner, c.Epoch = holders[p].Owner, holders[p].RingOwner, holders[p].Epoch
		}
		if d, ok := depth[p]; ok {
			c.Depth = d
		}
		v.Cells[p] = c
	}
}

func health(m *workerpb.MemberStatus) string {
	switch {
	case m.Error != "":
		return "unreachable"
	case m.Degraded:
		return "degraded"
	case m.Draining:
		return "draining"
	case m.LeaseRemainingMs <= 0:
		return "no lease"
	}
	return "ok"
}

// record appends a sample of rates since the previous one. Counters are
// per process: a member's drop means it restarted, so its whole count is
// new; a member first seen after the first sample counts from zero. After
// a gap (nobody looked) the sample only sets the baseline.
func (s *sampler) record(now time.Time, st *workerpb.StatusResponse) {
	gap := s.lastAt.IsZero() || now.Sub(s.lastAt) > 3*s.interval
	dt := now.Sub(s.lastAt).Seconds()
	cur := make(map[string]counters, len(st.Members))
	var d counters
	smp := Sample{AtMs: now.UnixMilli(), Depth: st.TotalDepth}
	for _, m := range st.Members {
		if m.Error != "" {
			if c, ok := s.last[m.Id]; ok {
				cur[m.Id] = c
			}
			continue
		}
		c := counters{m.Committed, m.Retried, m.DeadLettered, m.Fenced}
		cur[m.Id] = c
		smp.Total += c.committed
		prev := s.last[m.Id]
		if c.committed < prev.committed || c.retried < prev.retried || c.dead < prev.dead || c.fenced < prev.fenced {
			prev = counters{}
		}
		d.committed += c.committed - prev.committed
		d.retried += c.retried - prev.retried
		d.dead += c.dead - prev.dead
		d.fenced += c.fenced - prev.fenced
	}
	s.last, s.lastAt = cur, now
	if gap || dt <= 0 {
		return
	}
	smp.Committed, smp.Retried = float64(d.committed)/dt, float64(d.retried)/dt
	smp.Dead, smp.Fenced = float64(d.dead)/dt, float64(d.fenced)/dt
	if len(s.ring) == cap(s.ring) {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:len(s.ring)-1]
	}
	s.ring = append(s.ring, smp)
}
