package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/redis/go-redis/v9"
)

// claimStore is what the ownership controller needs of the partition
// claims in Redis.
type claimStore interface {
	Claim(ctx context.Context, p int, token, expected string) (lease.Grant, error)
	Release(ctx context.Context, p int, token string) (bool, error)
	// Holders returns the holder token of each partition ("" when free).
	Holders(ctx context.Context, parts []int) (map[int]string, error)
	AliveTokens(ctx context.Context, tokens []string) (map[string]bool, error)
	// Events wakes the controller on releases, departures and layout
	// changes.
	Events(ctx context.Context) <-chan string
	LoadLayout(ctx context.Context, known lease.Layout) (lease.Layout, bool, error)
	SwapLayout(ctx context.Context, next lease.Layout) (lease.Layout, bool, error)
}

// leaseHolder is this worker's liveness lease (lease.Keeper).
type leaseHolder interface {
	Token() string
	Valid() bool
	Lost() <-chan struct{}
	Stop()
}

// stepDown says why a worker may not hold partitions; noStepDown when it may.
type stepDown int

const (
	noStepDown stepDown = iota
	stepDraining
	stepNoLease
	stepConsulOut
	stepNoRing
)

func (s stepDown) String() string {
	return [...]string{"", "draining", "lease not held", "Consul unreachable", "no ring yet"}[s]
}

// ownership is the ownership controller: it turns the ring into claims
// and releases of partitions, records the grants in grants, and hands
// everything off on drain and stop.
type ownership struct {
	cfg    Config
	log    *slog.Logger
	claims claimStore
	lease  leaseHolder
	grants *grants
	view   *membership
	deaths *deathWatch // nil when takeover waits for lease expiry alone

	draining atomic.Bool // handing off; claim nothing
	// reconcileMu keeps a drain from racing a reconcile that already
	// decided to claim.
	reconcileMu sync.Mutex
	kick        chan struct{} // reconcile now
	consul      consulState
	stats       ownershipStats

	loop loopMemory // read and written by the ownership loop only
	// events, when set, hears of membership snapshots and of the
	// partitions this worker claims.
	events *clusterEvents
}

// loopMemory is what the ownership loop carries from one round to the
// next.
type loopMemory struct {
	lastSweep time.Time         // when owner keys naming us were last checked
	blocked   map[int]time.Time // wanted partitions held by a live peer, since
}

// ownershipStats counts partition moves for health and metrics.
type ownershipStats struct {
	takeovers atomic.Int64 // claims from a holder whose lease was gone
	handoffs  atomic.Int64 // claims of partitions released by their holder
	moves     atomic.Int64 // partitions claimed or given up
	buried    atomic.Int64 // peers' leases ended early on a refused port
}

// consulState records whether Consul takes our check updates.
type consulState struct {
	clock time.Time    // monotonic origin of okAt
	okAt  atomic.Int64 // since clock, when Consul last took our check update
	out   atomic.Bool  // we could not reach Consul for a check TTL: out of the ring
}

func newOwnership(cfg Config, log *slog.Logger, claims claimStore, lh leaseHolder, g *grants, view *membership) *ownership {
	return &ownership{cfg: cfg, log: log, claims: claims, lease: lh, grants: g, view: view,
		kick: make(chan struct{}, 1), consul: consulState{clock: time.Now()}}
}

// claimCounts says how many partitions were taken over from dead holders
// and how many were handed over by live ones.
func (o *ownership) claimCounts() (takeovers, handoffs int64) {
	return o.stats.takeovers.Load(), o.stats.handoffs.Load()
}

// burials says how many dead peers' leases this worker ended early.
func (o *ownership) burials() int64 { return o.stats.buried.Load() }

// sweepEvery is how often a worker reads every partition's owner key to
// release those that name it but that it does not process (a claim whose
// reply was lost, a release that failed).
const sweepEvery = 5 * time.Second

// watchMembers records every membership change; the ownership loop turns
// it into a ring. It also points the death watch at the members, and
// stops it when snaps ends.
func (o *ownership) watchMembers(snaps <-chan discovery.Snapshot) {
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		if o.deaths != nil {
			o.deaths.stop()
		}
	}()
	for snap := range snaps {
		o.view.observe(snap)
		if o.events != nil {
			o.events.observe(snap)
		}
		if o.deaths != nil {
			o.deaths.update(ctx, snap.Members)
		}
		o.wake()
	}
}

func (o *ownership) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run reconciles owned partitions with the ring: release what the ring
// gave away, claim what it gave us once its holder let go or died. It
// wakes on membership changes, on release and departure announcements in
// Redis, and every ClaimEvery.
func (o *ownership) run(ctx context.Context) {
	events := o.claims.Events(ctx)
	t := time.NewTicker(o.cfg.ClaimEvery)
	defer t.Stop()
	for {
		lost := o.lease.Lost()
		select {
		case <-ctx.Done():
			return
		case <-lost:
			n := o.grants.dropAll()
			o.log.Warn("lease expired before renewal; dropped every partition", "dropped", n)
		case <-o.kick:
		case <-events:
		case <-t.C:
		}
		o.refreshLayout(ctx, false)
		if err := o.reconcile(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("ownership reconcile failed", "err", err)
		}
	}
}

// layoutTimeout bounds one refresh of the layout, in claim rounds: a few
// round trips to Redis.
const layoutTimeout = 5

// refreshLayout brings the layout up to date (membership.refresh) and
// installs its ring. leave takes this worker out of it (it stops); so do
// a drain and being out of Consul.
func (o *ownership) refreshLayout(ctx context.Context, leave bool) {
	o.reconcileMu.Lock()
	defer o.reconcileMu.Unlock()
	o.refreshLocked(ctx, leave)
}

func (o *ownership) refreshLocked(ctx context.Context, leave bool) {
	rctx, cancel := context.WithTimeout(ctx, layoutTimeout*o.cfg.ClaimEvery)
	defer cancel()
	leave = leave || o.draining.Load() || o.consul.out.Load()
	o.view.refresh(rctx, o.claims, selfState{token: o.lease.Token(), canOwn: o.mayJoin(), leave: leave})
}

// mayJoin says whether this worker may be placed: it may own partitions
// but for having no ring yet.
func (o *ownership) mayJoin() bool {
	s := o.mayOwn()
	return s == noStepDown || s == stepNoRing
}

// mayOwn says whether this worker may hold partitions at all, and if not,
// why.
func (o *ownership) mayOwn() stepDown {
	switch {
	case o.draining.Load():
		return stepDraining
	case !o.lease.Valid():
		return stepNoLease
	case o.consul.out.Load():
		return stepConsulOut
	case o.view.current() == nil:
		return stepNoRing
	}
	return noStepDown
}

func (o *ownership) desired() map[int]bool {
	out := map[int]bool{}
	if o.mayOwn() != noStepDown {
		return out
	}
	for _, p := range o.view.current().PartitionsOf(o.cfg.ID) {
		out[p] = true
	}
	return out
}

func (o *ownership) reconcile(ctx context.Context) error {
	o.reconcileMu.Lock()
	defer o.reconcileMu.Unlock()
	want := o.desired()
	owned := o.grants.snapshot()

	release := o.grants.pending()
	for p := range owned {
		if !want[p] {
			release = append(release, p)
		}
	}
	if time.Since(o.loop.lastSweep) >= sweepEvery {
		stray, lost, err := o.strays(ctx, owned)
		if err != nil {
			return err
		}
		o.loop.lastSweep = time.Now()
		if len(stray) > 0 {
			o.log.Warn("partitions named for this worker in Redis that it does not process; releasing them", "partitions", fmt.Sprint(stray))
			release = append(release, stray...)
		}
		if len(lost) > 0 {
			// Redis no longer names us (it lost the claim, or our lease
			// lapsed and a peer took over): a commit would be fenced, but
			// with no job to commit nothing would tell us, and a partition
			// free in Redis would wait with nobody processing it.
			o.log.Warn("partitions this worker processes that Redis no longer names it for; dropping their grants and claiming again where the ring says so", "partitions", fmt.Sprint(lost))
			for _, p := range lost {
				o.grants.drop(p, owned[p])
				delete(owned, p)
			}
		}
	}
	if len(release) > 0 {
		if _, err := o.release(ctx, release); err != nil {
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
	holders, err := o.claimable(ctx, claim)
	if err != nil {
		return err
	}
	o.noteBlocked(claim, holders)
	var got []string
	for _, p := range claim {
		expected, ok := holders[p]
		if !ok {
			continue // its holder is alive; it releases when it sees the ring
		}
		if o.mayOwn() != noStepDown {
			break // the lease lapsed while claiming
		}
		grant, err := o.claims.Claim(ctx, p, o.lease.Token(), expected)
		if errors.Is(err, lease.ErrHeld) {
			continue
		}
		if err != nil {
			return err
		}
		o.grants.add(p, grant)
		if o.events != nil {
			o.events.tell(store.ClusterEvent{Kind: "partition.moved", Partition: &p, From: lease.WorkerID(expected), To: o.cfg.ID, Epoch: grant.Epoch})
		}
		if expected != "" && expected != o.lease.Token() {
			o.stats.takeovers.Add(1)
			got = append(got, fmt.Sprintf("%d@%s(from %s)", p, grant, lease.WorkerID(expected)))
		} else {
			o.stats.handoffs.Add(1)
			got = append(got, fmt.Sprintf("%d@%s", p, grant))
		}
	}
	if len(got) > 0 {
		o.stats.moves.Add(int64(len(got)))
		o.log.Info("claimed partitions", "partitions(grant)", strings.Join(got, " "))
	}
	return nil
}

// release stops processing parts, waits for the in-flight batch, and frees
// them in Redis so their next owners claim at once. It returns how many
// were still held by this worker. A partition whose release fails is kept
// as pending and released again on the next reconcile (and by Stop), so a
// Redis error never leaves it named for a worker that does not process it.
func (o *ownership) release(ctx context.Context, parts []int) (int, error) {
	slices.Sort(parts)
	parts = slices.Compact(parts)
	o.stats.moves.Add(int64(o.grants.giveUp(parts)))
	var errs []error
	var failed []int
	n := 0
	for _, p := range parts {
		ok, err := o.claims.Release(ctx, p, o.lease.Token())
		if err != nil {
			errs = append(errs, err)
			failed = append(failed, p)
			continue
		}
		o.grants.released(p)
		if ok {
			n++
			if o.events != nil {
				o.events.tell(store.ClusterEvent{Kind: "partition.released", Partition: &p, From: o.cfg.ID})
			}
		}
	}
	if len(failed) > 0 {
		o.log.Warn("release failed; trying again", "partitions", fmt.Sprint(failed), "err", errors.Join(errs...))
	}
	o.log.Info("released partitions", "partitions", fmt.Sprint(parts), "freed", n)
	return n, errors.Join(errs...)
}

// releaseAll hands every owned partition off, and those whose release
// did not go through before; it returns how many it freed.
func (o *ownership) releaseAll(ctx context.Context) int {
	parts := o.grants.pending()
	for p := range o.grants.snapshot() {
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return 0
	}
	n, err := o.release(ctx, parts)
	if err != nil {
		o.log.Warn("release failed; those partitions move when the lease expires", "err", err)
	}
	return n
}

// drain claims nothing from now on and hands every partition off; the
// lease goes last, so peers drop this worker from their rings and claim
// at once. announce runs before the release and after the lease is gone.
func (o *ownership) drain(ctx context.Context, announce func(context.Context)) int {
	// Under the lock first: a round of the ownership loop that saw
	// draining would release the partitions itself, and the drain would
	// report none.
	o.reconcileMu.Lock()
	defer o.reconcileMu.Unlock()
	o.draining.Store(true)
	announce(ctx)
	o.refreshLocked(ctx, true) // out of the layout: peers take up our partitions as we release them
	n := o.releaseAll(ctx)
	// No claims can follow: draining is set and the lease goes now.
	o.lease.Stop()
	announce(ctx)
	return n
}

// strays reads every partition's owner key and returns those that name
// this worker's token but that it neither processes nor is releasing (a
// claim whose reply was lost, say), and those it processes that name
// another token or none (lost). A claim in flight cannot be among them:
// claims and sweeps both run in the ownership loop.
func (o *ownership) strays(ctx context.Context, owned map[int]lease.Grant) (stray, lost []int, err error) {
	all := make([]int, o.cfg.routing().Partitions())
	for p := range all {
		all[p] = p
	}
	holders, err := o.claims.Holders(ctx, all)
	if err != nil {
		return nil, nil, err
	}
	pending := o.grants.pending()
	for _, p := range all {
		_, processed := owned[p]
		switch {
		case holders[p] != o.lease.Token() && processed:
			lost = append(lost, p)
		case holders[p] == o.lease.Token() && !processed && !slices.Contains(pending, p):
			stray = append(stray, p)
		}
	}
	return stray, lost, nil
}

// noteBlocked logs, once per episode, a partition the ring gives this
// worker that a live peer has held for longer than a lease TTL: nobody may
// be processing it (a peer that failed to release it, or one that sees
// another ring).
func (o *ownership) noteBlocked(claim []int, claimable map[int]string) {
	if o.loop.blocked == nil {
		o.loop.blocked = map[int]time.Time{}
	}
	now := time.Now()
	for p, since := range o.loop.blocked {
		if _, free := claimable[p]; free || !slices.Contains(claim, p) {
			delete(o.loop.blocked, p)
		} else if !since.IsZero() && now.Sub(since) > o.cfg.Lease.TTL {
			o.log.Warn("partition held by a live peer for longer than a lease TTL although the ring gives it to this worker; is the peer processing it?",
				"partition", p, "waiting", now.Sub(since).Round(time.Millisecond))
			o.loop.blocked[p] = time.Time{} // logged; quiet until it is resolved
		}
	}
	for _, p := range claim {
		if _, free := claimable[p]; !free {
			if _, seen := o.loop.blocked[p]; !seen {
				o.loop.blocked[p] = now
			}
		}
	}
}

// claimable returns, for each partition that may be claimed now, the
// holder token the claim must replace ("" when free). Partitions whose
// holder's lease is alive are left out: that holder must release first.
func (o *ownership) claimable(ctx context.Context, parts []int) (map[int]string, error) {
	out, err := o.claims.Holders(ctx, parts)
	if err != nil {
		return nil, err
	}
	var tokens []string
	for _, tok := range out {
		if tok != "" && tok != o.lease.Token() {
			tokens = append(tokens, tok)
		}
	}
	alive, err := o.claims.AliveTokens(ctx, tokens)
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
func (o *ownership) noteConsul(ok bool) {
	now := time.Since(o.consul.clock)
	if ok {
		o.consul.okAt.Store(int64(now))
		if o.consul.out.Swap(false) {
			o.log.Info("Consul answers again; claiming partitions again")
			o.wake()
		}
		return
	}
	silent := now - time.Duration(o.consul.okAt.Load())
	if silent > o.cfg.CheckTTL && !o.consul.out.Swap(true) {
		o.log.Warn("cannot update the Consul check for longer than its TTL; assuming we are out of the ring and stepping down",
			"silent_for", silent.Round(time.Millisecond))
		o.wake()
	}
}

// redisClaims is claimStore on Redis, through the lease package.
type redisClaims struct{ rdb redis.UniversalClient }

func (c redisClaims) Claim(ctx context.Context, p int, token, expected string) (lease.Grant, error) {
	return lease.Claim(ctx, c.rdb, p, token, expected)
}

func (c redisClaims) Release(ctx context.Context, p int, token string) (bool, error) {
	return lease.Release(ctx, c.rdb, p, token)
}

func (c redisClaims) AliveTokens(ctx context.Context, tokens []string) (map[string]bool, error) {
	return lease.AliveTokens(ctx, c.rdb, tokens)
}

func (c redisClaims) Events(ctx context.Context) <-chan string { return lease.Events(ctx, c.rdb) }

func (c redisClaims) LoadLayout(ctx context.Context, known lease.Layout) (lease.Layout, bool, error) {
	return lease.LoadLayout(ctx, c.rdb, known)
}

func (c redisClaims) SwapLayout(ctx context.Context, next lease.Layout) (lease.Layout, bool, error) {
	return lease.SwapLayout(ctx, c.rdb, next)
}

func (c redisClaims) HoldersOf(ctx context.Context, parts []int) (map[int]lease.Holder, error) {
	return lease.HoldersOf(ctx, c.rdb, parts)
}

func (c redisClaims) Holders(ctx context.Context, parts []int) (map[int]string, error) {
	hs, err := lease.HoldersOf(ctx, c.rdb, parts)
	if err != nil {
		return nil, err
	}
	out := make(map[int]string, len(hs))
	for p, h := range hs {
		out[p] = h.Token
	}
	return out, nil
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
