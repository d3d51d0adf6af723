package worker

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/handlerset"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/routing"
	"github.com/corralhq/corral/sharding"
)

// metaLease is the service meta key under which a worker publishes its
// lease token, so peers can tell a dead member from a live one without
// waiting for its Consul check to expire.
const metaLease = "lease"

// membership is this worker's view of the cluster: the healthy members
// Consul reports, their addresses, and the ring built from the layout
// stored in Redis (lease.Layout). The ownership loop alone rebuilds the
// ring; anyone may read it.
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
	layout   lease.Layout                       // the layout the ring was built from (ownership loop only)
	ringSet  bool                               // a layout was installed (ownership loop only)
	failing  bool                               // the last refresh failed; logged (ownership loop only)
	changed  func()                             // called when the ring is rebuilt; set before Start
}

func newMembership(cfg Config, log *slog.Logger) *membership {
	return &membership{self: cfg.ID, ringCfg: cfg.Ring, routes: cfg.Routing, log: log}
}

// observe records a membership snapshot from Consul.
func (m *membership) observe(snap discovery.Snapshot) {
	ms := snap.Members
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

// layoutSource is what refresh needs of Redis: the members' leases and
// the stored layout (lease.Layout).
type layoutSource interface {
	AliveTokens(ctx context.Context, tokens []string) (map[string]bool, error)
	LoadLayout(ctx context.Context, known lease.Layout) (lease.Layout, bool, error)
	SwapLayout(ctx context.Context, next lease.Layout) (lease.Layout, bool, error)
}

// selfState is what this worker says of itself to the layout: its lease
// token, whether it may own partitions (it holds its lease, is not
// draining and Consul takes its check), and whether it is leaving
// (draining, stopping, or out of Consul). A lease that lapses is no
// reason to leave: peers take the worker out once its lease key is gone.
type selfState struct {
	token  string
	canOwn bool
	leave  bool
}

// swapTries bounds the compare-and-swaps of one refresh; peers that won
// the others made the changes this worker wanted, or it tries again on
// its next round.
const swapTries = 3

// refresh brings the stored layout up to date with what this worker knows,
// and builds the ring from it:
//
//   - a member whose lease is gone (expired, deleted on stop, or buried by
//     a death watch) leaves the layout, its partitions spread over the
//     others;
//   - this worker joins it once Consul lists it, its lease is alive and it
//     may own partitions, and leaves it when it drains, stops or is out of
//     Consul; no worker adds or drops another live one, so a worker whose
//     Consul view lags cannot undo what a newer view did;
//   - a reshard's count of partitions is applied once this worker's routes
//     have it.
//
// Each change is sharding.Settle of the layout before: exact shares, and
// only the partitions that must move do. The first layout of a cluster
// places every partition on the first worker that stores one; the others
// join it. (Workers of an earlier release, which place by the ring of the
// members they see, are never in it: between them the workers that are
// want every partition, so none is left unowned while a cluster upgrades.)
func (m *membership) refresh(ctx context.Context, st layoutSource, me selfState) {
	parts := m.ringCfg.Partitions
	if m.routes != nil {
		parts = m.routes.Partitions() // a reshard's children have owners from its start
	}
	known := m.layout
	for range swapTries {
		l, changed, err := st.LoadLayout(ctx, known)
		if err != nil {
			m.layoutFailed("cannot read the layout", err)
			return // our own lease lapses too if this lasts
		}
		if !changed {
			l = m.layout
		}
		next, why, err := m.wanted(ctx, st, l, me, parts)
		if err != nil {
			m.layoutFailed("cannot settle the layout", err)
			return
		}
		m.failing = false
		if next == nil {
			m.install(l)
			return
		}
		got, ok, err := st.SwapLayout(ctx, *next)
		if err != nil {
			m.layoutFailed("cannot store the layout", err)
			return
		}
		if ok {
			m.log.Info("layout changed", "version", got.Version, "why", why)
			m.install(got)
			return
		}
		known = lease.Layout{Version: -1} // changed meanwhile: read it whole again
	}
}

// layoutFailed logs the first failure of an episode; the ownership loop
// retries every round.
func (m *membership) layoutFailed(msg string, err error) {
	if !m.failing {
		m.log.Warn(msg+"; trying again every claim round", "err", err)
	}
	m.failing = true
}

// wanted is the layout that should follow l, and why, or nil when l is
// right as it is.
func (m *membership) wanted(ctx context.Context, st layoutSource, l lease.Layout, me selfState, parts int) (*lease.Layout, string, error) {
	members := slices.Clone(l.Members)
	// Our own lease is read too: a worker whose lease a peer ended (or that
	// expired while it was paused) joins again only once it has taken a new
	// one, or it would be put back and taken out again.
	tokens := []string{me.token}
	for _, mb := range members {
		tokens = append(tokens, mb.Token)
	}
	live, err := st.AliveTokens(ctx, tokens)
	if err != nil {
		return nil, "", err
	}
	mayJoin := me.canOwn && !me.leave && live[me.token] && m.listsSelf()
	var why []string
	if l.Version == 0 {
		if !mayJoin {
			return nil, "", nil
		}
		members = []lease.Member{{ID: m.self, Token: me.token}}
		why = append(why, "first layout")
	} else {
		members = slices.DeleteFunc(members, func(mb lease.Member) bool {
			if !live[mb.Token] {
				why = append(why, mb.ID+" left (lease gone)")
				return true
			}
			return false
		})
		i := slices.IndexFunc(members, func(mb lease.Member) bool { return mb.ID == m.self })
		switch {
		case i >= 0 && me.leave:
			members = slices.Delete(members, i, i+1)
			why = append(why, m.self+" stepped down")
		case i < 0 && mayJoin:
			members = append(members, lease.Member{ID: m.self, Token: me.token})
			slices.SortFunc(members, func(a, b lease.Member) int { return strings.Compare(a.ID, b.ID) })
			why = append(why, m.self+" joined")
		}
	}
	switch {
	case len(l.Owners) > parts:
		return nil, "", nil // our routes lag a reshard: wait for them
	case len(l.Owners) < parts && l.Version > 0:
		why = append(why, "partitions "+strconv.Itoa(len(l.Owners))+" → "+strconv.Itoa(parts))
	}
	if len(why) == 0 {
		return nil, "", nil
	}
	cfg := m.ringCfg
	cfg.Partitions = parts
	next := lease.Layout{Version: l.Version, Members: members}
	owners, err := sharding.Settle(cfg, next.IDs(), l.Owners)
	if err != nil {
		return nil, "", err
	}
	next.Owners = owners
	return &next, strings.Join(why, "; "), nil
}

// listsSelf says whether Consul lists this worker as a healthy member.
func (m *membership) listsSelf() bool {
	if mp := m.members.Load(); mp != nil {
		return slices.ContainsFunc(*mp, func(mb discovery.Member) bool { return mb.ID == m.self })
	}
	return false
}

// install makes l the ring in use, unless it is the one in use already or
// was made for more partitions than this worker's routes know of (a
// reshard they have not caught up with).
func (m *membership) install(l lease.Layout) {
	if l.Same(m.layout) && m.ringSet {
		return
	}
	if m.routes != nil && len(l.Owners) > m.routes.Partitions() {
		return
	}
	before := m.layout.IDs()
	m.layout, m.ringSet = l, true
	joined, left := memberChanges(before, l.IDs())
	if len(l.Members) == 0 || len(l.Owners) == 0 {
		m.ring.Store(nil)
		m.log.Info("membership changed: no live member", "left", strings.Join(left, ","))
		m.notifyChanged()
		return
	}
	cfg := m.ringCfg
	cfg.Partitions = len(l.Owners)
	ring, err := sharding.Placed(cfg, l.IDs(), l.Owners)
	if err != nil {
		m.log.Error("cannot build ring from the layout", "version", l.Version, "err", err)
		return
	}
	old := m.ring.Swap(ring)
	moved := len(sharding.Moves(old, ring))
	m.log.Info("membership changed", "layout", l.Version, "joined", strings.Join(joined, ","), "left", strings.Join(left, ","),
		"members", len(l.Members), "partitions_moved", moved, "mine", len(ring.PartitionsOf(m.self)))
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
