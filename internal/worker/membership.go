package worker

import (
	"context"
	"github.com/corralhq/corral/internal/routing"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/handlerset"
	"github.com/corralhq/corral/sharding"
)

// metaLease is the service meta key under which a worker publishes its
// lease token, so peers can tell a dead member from a live one without
// waiting for its Consul check to expire.
const metaLease = "lease"

// membership is this worker's view of the cluster: the healthy members
// Consul reports, their addresses, and the ring built from those whose
// lease is alive. The ownership loop alone rebuilds the ring; anyone may
// read it.
type membership struct {
	self    string
	ringCfg sharding.Config
	routes  *routing.Table // the partition count the ring places
	log     *slog.Logger

	members  atomic.Pointer[[]discovery.Member] // last healthy members Consul reported
	addrs    atomic.Pointer[map[string]string]  // member id → gRPC address
	handlers atomic.Pointer[memberHandlers]     // what the members publish they serve
	handDiff string                             // the differences last logged (observe only)
	ring     atomic.Pointer[sharding.Ring]      // nil until built, or when no member is live
	ringIDs  string                             // members the current ring was built from (ownership loop only)
	ringSet  bool                               // ringIDs is set (ownership loop only)
	changed  func()                             // called when the ring is rebuilt; set before Start

	grace recoveryGrace
}

// recoveryGrace: after Consul comes back (an agent restart forgets every
// service), members re-register one by one; until the grace ends the
// members seen before stay on the ring if their leases live, so the
// partitions do not move back and forth meanwhile.
type recoveryGrace struct {
	length  time.Duration
	members atomic.Pointer[[]discovery.Member]
	until   atomic.Int64 // since clock
	clock   time.Time    // monotonic origin of until
}

func newMembership(cfg Config, log *slog.Logger) *membership {
	m := &membership{self: cfg.ID, ringCfg: cfg.Ring, routes: cfg.Routing, log: log}
	m.grace.length, m.grace.clock = cfg.CheckTTL, time.Now()
	return m
}

// observe records a membership snapshot from Consul.
func (m *membership) observe(snap discovery.Snapshot) {
	ms := snap.Members
	if prev := m.members.Load(); snap.Recovered && prev != nil {
		m.grace.members.Store(prev)
		m.grace.until.Store(int64(time.Since(m.grace.clock) + m.grace.length))
		m.log.Info("Consul answers again; keeping the members seen before on the ring while they register again",
			"grace", m.grace.length)
	}
	addrs := make(map[string]string, len(ms))
	for _, mb := range ms {
		addrs[mb.ID] = mb.Address
	}
	m.addrs.Store(&addrs)
	m.members.Store(&ms)
	mh := readHandlers(ms)
	m.handlers.Store(mh)
	if d := strings.Join(mh.differences(), "; "); d != m.handDiff {
		m.handDiff = d
		if d == "" {
			m.log.Info("every member serves the same handlers from the same plugin versions")
		} else {
			m.log.Warn("members serve different handlers; a job whose key's owner lacks its handler waits for one that serves it",
				"differences", d)
		}
	}
}

// memberHandlers is what the members publish they serve.
type memberHandlers struct {
	sets    map[string]handlerset.Set // by member id, of those whose set could be read
	unknown []string                  // members whose set could not be read
	served  map[string]bool           // every handler some member serves
}

// readHandlers reads the handler sets members publish in their meta.
func readHandlers(ms []discovery.Member) *memberHandlers {
	mh := &memberHandlers{sets: make(map[string]handlerset.Set, len(ms)), served: map[string]bool{}}
	for _, mb := range ms {
		s, err := handlerset.FromMeta(mb.Meta)
		if err != nil {
			mh.unknown = append(mh.unknown, mb.ID)
			continue
		}
		mh.sets[mb.ID] = s
		for _, h := range s.Handlers() {
			mh.served[h] = true
		}
	}
	return mh
}

func (mh *memberHandlers) differences() []string {
	return handlerset.Compare(mh.sets, mh.unknown).Lines()
}

// handlerSets is what the members publish they serve; never nil.
func (m *membership) handlerSets() *memberHandlers {
	if mh := m.handlers.Load(); mh != nil {
		return mh
	}
	return &memberHandlers{}
}

// current is the ring in use, nil when there is none.
func (m *membership) current() *sharding.Ring { return m.ring.Load() }

// addressOf is the gRPC address of a member, "" if it is not a healthy member.
func (m *membership) addressOf(id string) string {
	if a := m.addrs.Load(); a != nil {
		return (*a)[id]
	}
	return ""
}

// refresh rebuilds the ring from the healthy members whose Redis lease is
// alive. A killed worker's lease expires a lease TTL after its last
// renewal, sooner than Consul's check would notice, and a stopping
// worker's lease is deleted on the spot.
func (m *membership) refresh(ctx context.Context, alive func(context.Context, []string) (map[string]bool, error)) {
	mp := m.members.Load()
	if mp == nil {
		return
	}
	members := *mp
	if time.Since(m.grace.clock) < time.Duration(m.grace.until.Load()) {
		if g := m.grace.members.Load(); g != nil {
			members = withMissing(members, *g)
		}
	}
	var tokens []string
	for _, mb := range members {
		if tok := mb.Meta[metaLease]; tok != "" && mb.ID != m.self {
			tokens = append(tokens, tok)
		}
	}
	live, err := alive(ctx, tokens)
	if err != nil {
		return // cannot tell; our own lease lapses too if this lasts
	}
	ids := make([]string, 0, len(members))
	for _, mb := range members {
		if tok := mb.Meta[metaLease]; mb.ID == m.self || tok == "" || live[tok] {
			ids = append(ids, mb.ID)
		}
	}
	slices.Sort(ids)
	ringCfg := m.ringCfg
	if m.routes != nil {
		ringCfg.Partitions = m.routes.Partitions() // a reshard's children have owners from its start
	}
	key := strings.Join(ids, ",") + "/" + strconv.Itoa(ringCfg.Partitions)
	if key == m.ringIDs && m.ringSet {
		return
	}
	var before []string
	if m.ringIDs != "" {
		before = strings.Split(strings.Split(m.ringIDs, "/")[0], ",")
	}
	joined, left := memberChanges(before, ids)
	if len(ids) == 0 {
		m.ringIDs, m.ringSet = key, true
		m.ring.Store(nil)
		m.log.Info("membership changed: no live member", "left", strings.Join(left, ","))
		m.notifyChanged()
		return
	}
	ring, err := sharding.NewRing(ringCfg, ids)
	if err != nil {
		m.log.Error("cannot build ring", "err", err)
		return
	}
	m.ringIDs, m.ringSet = key, true
	old := m.ring.Swap(ring)
	moved := len(sharding.Moves(old, ring))
	m.log.Info("membership changed", "joined", strings.Join(joined, ","), "left", strings.Join(left, ","),
		"members", len(ids), "partitions_moved", moved, "mine", len(ring.PartitionsOf(m.self)))
	m.notifyChanged()
}

func (m *membership) notifyChanged() {
	if m.changed != nil {
		m.changed()
	}
}

// memberChanges names the members of after missing from before (joined)
// and those of before missing from after (left); both inputs are sorted.
func memberChanges(before, after []string) (joined, left []string) {
	for _, id := range after {
		if _, found := slices.BinarySearch(before, id); !found {
			joined = append(joined, id)
		}
	}
	for _, id := range before {
		if _, found := slices.BinarySearch(after, id); !found {
			left = append(left, id)
		}
	}
	return joined, left
}

// withMissing returns ms plus the members of extra whose IDs ms lacks.
func withMissing(ms, extra []discovery.Member) []discovery.Member {
	out := slices.Clone(ms)
	for _, e := range extra {
		if !slices.ContainsFunc(ms, func(m discovery.Member) bool { return m.ID == e.ID }) {
			out = append(out, e)
		}
	}
	return out
}
