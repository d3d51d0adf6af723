package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// metaLease is the service meta key under which a worker publishes its
// lease token, so peers can tell a dead member from a live one without
// waiting for its Consul check to expire.
const metaLease = "lease"

// ownership is the state of the ownership controller.
type ownership struct {
	members  atomic.Pointer[[]discovery.Member] // last healthy members Consul reported
	ringIDs  string                             // members the current ring was built from (ownership loop only)
	ringSet  bool                               // ringIDs is set (ownership loop only)
	draining atomic.Bool                        // handing off; claim nothing

	// After Consul comes back (an agent restart forgets every service),
	// members re-register one by one; until graceUntil the members seen
	// before stay on the ring if their leases live, so the partitions do
	// not move back and forth meanwhile.
	graceMembers atomic.Pointer[[]discovery.Member]
	graceUntil   atomic.Int64 // since clock

	// reconcileMu keeps a drain from racing a reconcile that already
	// decided to claim.
	reconcileMu sync.Mutex

	clock     time.Time    // monotonic origin of consulOK
	consulOK  atomic.Int64 // since clock, when Consul last took our check update
	consulOut atomic.Bool  // we could not reach Consul for a check TTL: out of the ring

	takeovers atomic.Int64 // claims from a holder whose lease was gone
	handoffs  atomic.Int64 // claims of partitions released by their holder

	// Ownership loop only:
	lastSweep time.Time         // when owner keys naming us were last checked
	blocked   map[int]time.Time // wanted partitions held by a live peer, since
}

// sweepEvery is how often a worker reads every partition's owner key to
// release those that name it but that it does not process (a claim whose
// reply was lost, a release that failed).
const sweepEvery = 5 * time.Second

// watchMembers records every membership change; the ownership loop turns
// it into a ring.
func (w *Worker) watchMembers(ctx context.Context) {
	for snap := range w.registry.Watch(ctx) {
		ms := snap.Members
		if prev := w.own.members.Load(); snap.Recovered && prev != nil {
			w.own.graceMembers.Store(prev)
			w.own.graceUntil.Store(int64(time.Since(w.own.clock) + w.cfg.CheckTTL))
			w.log.Info("Consul answers again; keeping the members seen before on the ring while they register again",
				"grace", w.cfg.CheckTTL)
		}
		addrs := make(map[string]string, len(ms))
		for _, m := range ms {
			addrs[m.ID] = m.Address
		}
		w.setAddresses(addrs)
		w.own.members.Store(&ms)
		w.kickOwnership()
	}
}

func (w *Worker) kickOwnership() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// ownershipLoop reconciles owned partitions with the ring: release what the
// ring gave away, claim what it gave us once its holder let go or died. It
// wakes on membership changes, on release and departure announcements in
// Redis, and every ClaimEvery.
func (w *Worker) ownershipLoop(ctx context.Context) {
	events := lease.Events(ctx, w.rdb)
	t := time.NewTicker(w.cfg.ClaimEvery)
	defer t.Stop()
	for {
		lost := w.keeper.Lost()
		select {
		case <-ctx.Done():
			return
		case <-lost:
			w.mu.Lock()
			n := len(w.owned)
			w.owned = map[int]lease.Grant{}
			w.mu.Unlock()
			w.log.Warn("lease expired before renewal; dropped every partition", "dropped", n)
		case <-w.kick:
		case <-events:
		case <-t.C:
		}
		w.refreshRing(ctx)
		if err := w.reconcile(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("ownership reconcile failed", "err", err)
		}
	}
}

// refreshRing rebuilds the ring from the healthy members whose Redis lease
// is alive. A killed worker's lease expires a lease TTL after its last
// renewal, sooner than Consul's check would notice, and a stopping
// worker's lease is deleted on the spot.
func (w *Worker) refreshRing(ctx context.Context) {
	mp := w.own.members.Load()
	if mp == nil {
		return
	}
	members := *mp
	if time.Since(w.own.clock) < time.Duration(w.own.graceUntil.Load()) {
		if g := w.own.graceMembers.Load(); g != nil {
			members = withMissing(members, *g)
		}
	}
	var tokens []string
	for _, m := range members {
		if tok := m.Meta[metaLease]; tok != "" && m.ID != w.cfg.ID {
			tokens = append(tokens, tok)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.ClaimEvery)
	alive, err := lease.AliveTokens(rctx, w.rdb, tokens)
	cancel()
	if err != nil {
		return // cannot tell; our own lease lapses too if this lasts
	}
	ids := make([]string, 0, len(members))
	for _, m := range members {
		if tok := m.Meta[metaLease]; m.ID == w.cfg.ID || tok == "" || alive[tok] {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	key := strings.Join(ids, ",")
	if key == w.own.ringIDs && w.own.ringSet {
		return
	}
	if len(ids) == 0 {
		w.own.ringIDs, w.own.ringSet = key, true
		w.ring.Store(nil)
		w.log.Info("membership changed: no live member")
		return
	}
	ring, err := sharding.NewRing(w.cfg.Ring, ids)
	if err != nil {
		w.log.Error("cannot build ring", "err", err)
		return
	}
	w.own.ringIDs, w.own.ringSet = key, true
	old := w.ring.Swap(ring)
	moved := len(sharding.Moves(old, ring))
	w.log.Info("membership changed", "members", key, "partitions_moved", moved, "mine", len(ring.PartitionsOf(w.cfg.ID)))
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

// mayOwn says whether this worker may hold partitions at all, and if not,
// why.
func (w *Worker) mayOwn() (bool, string) {
	switch {
	case w.own.draining.Load():
		return false, "draining"
	case !w.keeper.Valid():
		return false, "lease not held"
	case w.own.consulOut.Load():
		return false, "Consul unreachable"
	case w.ring.Load() == nil:
		return false, "no ring yet"
	}
	return true, ""
}

func (w *Worker) desired() map[int]bool {
	out := map[int]bool{}
	if ok, _ := w.mayOwn(); !ok {
		return out
	}
	for _, p := range w.ring.Load().PartitionsOf(w.cfg.ID) {
		out[p] = true
	}
	return out
}

func (w *Worker) reconcile(ctx context.Context) error {
	w.own.reconcileMu.Lock()
	defer w.own.reconcileMu.Unlock()
	want := w.desired()
	owned := w.ownedSnapshot()

	release := w.pendingReleases()
	for p := range owned {
		if !want[p] {
			release = append(release, p)
		}
	}
	if time.Since(w.own.lastSweep) >= sweepEvery {
		stray, err := w.strays(ctx, owned)
		if err != nil {
			return err
		}
		w.own.lastSweep = time.Now()
		if len(stray) > 0 {
			w.log.Warn("partitions named for this worker in Redis that it does not process; releasing them", "partitions", fmt.Sprint(stray))
			release = append(release, stray...)
		}
	}
	if len(release) > 0 {
		if _, err := w.release(ctx, release); err != nil {
			return err
		}
	}

	var claim []int
	for p := range want {
		if _, ok := owned[p]; !ok {
			claim = append(claim, p)
		}
	}
	if len(claim) == 0 {
		return nil
	}
	sort.Ints(claim)
	holders, err := w.holders(ctx, claim)
	if err != nil {
		return err
	}
	w.noteBlocked(claim, holders)
	var got []string
	for _, p := range claim {
		expected, ok := holders[p]
		if !ok {
			continue // its holder is alive; it releases when it sees the ring
		}
		if ok, _ := w.mayOwn(); !ok {
			break // the lease lapsed while claiming
		}
		grant, err := lease.Claim(ctx, w.rdb, p, w.keeper.Token(), expected)
		if errors.Is(err, lease.ErrHeld) {
			continue
		}
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.owned[p] = grant
		w.mu.Unlock()
		if expected != "" && expected != w.keeper.Token() {
			w.own.takeovers.Add(1)
			got = append(got, fmt.Sprintf("%d@%s(from %s)", p, grant, lease.WorkerID(expected)))
		} else {
			w.own.handoffs.Add(1)
			got = append(got, fmt.Sprintf("%d@%s", p, grant))
		}
	}
	if len(got) > 0 {
		w.moves.Add(int64(len(got)))
		w.log.Info("claimed partitions", "partitions(grant)", strings.Join(got, " "))
	}
	return nil
}

// release stops processing parts, waits for the in-flight batch, and frees
// them in Redis so their next owners claim at once. It returns how many
// were still held by this worker. A partition whose release fails is kept
// as pending and released again on the next reconcile (and by Stop), so a
// Redis error never leaves it named for a worker that does not process it.
func (w *Worker) release(ctx context.Context, parts []int) (int, error) {
	slices.Sort(parts)
	parts = slices.Compact(parts)
	w.mu.Lock()
	for _, p := range parts {
		if _, ok := w.owned[p]; ok {
			w.moves.Add(1)
		}
		delete(w.owned, p)
		w.releasing[p] = true
	}
	w.mu.Unlock()
	w.batchMu.Lock()
	w.batchMu.Unlock() //nolint:staticcheck // wait for the in-flight batch
	var errs []error
	var failed []int
	n := 0
	for _, p := range parts {
		ok, err := lease.Release(ctx, w.rdb, p, w.keeper.Token())
		if err != nil {
			errs = append(errs, err)
			failed = append(failed, p)
			continue
		}
		w.mu.Lock()
		delete(w.releasing, p)
		w.mu.Unlock()
		if ok {
			n++
		}
	}
	if len(failed) > 0 {
		w.log.Warn("release failed; trying again", "partitions", fmt.Sprint(failed), "err", errors.Join(errs...))
	}
	w.log.Info("released partitions", "partitions", fmt.Sprint(parts), "freed", n)
	return n, errors.Join(errs...)
}

// pendingReleases lists the partitions given up whose release has not
// gone through yet.
func (w *Worker) pendingReleases() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, 0, len(w.releasing))
	for p := range w.releasing {
		out = append(out, p)
	}
	return out
}

// strays reads every partition's owner key and returns those that name
// this worker's token but that it neither processes nor is releasing: a
// claim whose reply was lost, say. A claim in flight cannot be among them:
// claims and sweeps both run in the ownership loop.
func (w *Worker) strays(ctx context.Context, owned map[int]lease.Grant) ([]int, error) {
	n := w.cfg.Ring.Partitions
	pipe := w.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, n)
	for p := 0; p < n; p++ {
		cmds[p] = pipe.Get(ctx, keys.For(p).Owner())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read partition owners: %w", err)
	}
	pending := w.pendingReleases()
	var out []int
	for p, c := range cmds {
		if c.Val() != w.keeper.Token() {
			continue
		}
		if _, ok := owned[p]; !ok && !slices.Contains(pending, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// noteBlocked logs, once per episode, a partition the ring gives this
// worker that a live peer has held for longer than a lease TTL: nobody may
// be processing it (a peer that failed to release it, or one that sees
// another ring).
func (w *Worker) noteBlocked(claim []int, claimable map[int]string) {
	if w.own.blocked == nil {
		w.own.blocked = map[int]time.Time{}
	}
	now := time.Now()
	for p, since := range w.own.blocked {
		if _, free := claimable[p]; free || !slices.Contains(claim, p) {
			delete(w.own.blocked, p)
		} else if !since.IsZero() && now.Sub(since) > w.cfg.Lease.TTL {
			w.log.Warn("partition held by a live peer for longer than a lease TTL although the ring gives it to this worker; is the peer processing it?",
				"partition", p, "waiting", now.Sub(since).Round(time.Millisecond))
			w.own.blocked[p] = time.Time{} // logged; quiet until it is resolved
		}
	}
	for _, p := range claim {
		if _, free := claimable[p]; !free {
			if _, seen := w.own.blocked[p]; !seen {
				w.own.blocked[p] = now
			}
		}
	}
}

// holders returns, for each partition that may be claimed now, the holder
// token the claim must replace ("" when free). Partitions whose holder's
// lease is alive are left out: that holder must release first.
func (w *Worker) holders(ctx context.Context, parts []int) (map[int]string, error) {
	hs, err := lease.HoldersOf(ctx, w.rdb, parts)
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	var tokens []string
	for p, h := range hs {
		tok := h.Token
		out[p] = tok
		if tok != "" && tok != w.keeper.Token() {
			tokens = append(tokens, tok)
		}
	}
	alive, err := lease.AliveTokens(ctx, w.rdb, tokens)
	if err != nil {
		return nil, err
	}
	for p, tok := range out {
		if alive[tok] {
			delete(out, p)
		}
	}
	return out, nil
}

// noteConsul records whether Consul took our last check update. A worker
// that cannot update its check for longer than the check TTL must assume
// Consul dropped it and peers took its partitions over: it steps down
// until Consul answers again.
func (w *Worker) noteConsul(ok bool) {
	now := time.Since(w.own.clock)
	if ok {
		w.own.consulOK.Store(int64(now))
		if w.own.consulOut.Swap(false) {
			w.log.Info("Consul answers again; claiming partitions again")
			w.kickOwnership()
		}
		return
	}
	silent := now - time.Duration(w.own.consulOK.Load())
	if silent > w.cfg.CheckTTL && !w.own.consulOut.Swap(true) {
		w.log.Warn("cannot update the Consul check for longer than its TTL; assuming we are out of the ring and stepping down",
			"silent_for", silent.Round(time.Millisecond))
		w.kickOwnership()
	}
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("worker: advertise address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("worker: advertise port %q: %w", p, err)
	}
	return h, port, nil
}
