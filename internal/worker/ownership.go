package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/sharding"
	"github.com/redis/go-redis/v9"
)

// watchMembers rebuilds the ring on every membership change.
func (w *Worker) watchMembers(ctx context.Context) {
	for snap := range w.registry.Watch(ctx) {
		ids := make([]string, len(snap.Members))
		addrs := make(map[string]string, len(snap.Members))
		for i, m := range snap.Members {
			ids[i] = m.ID
			addrs[m.ID] = m.Address
		}
		w.setAddresses(addrs)
		ring, err := sharding.NewRing(w.cfg.Ring, ids)
		if err != nil {
			w.log.Error("cannot build ring", "err", err)
			continue
		}
		old := w.ring.Swap(ring)
		moved := len(sharding.Moves(old, ring))
		w.log.Info("membership changed", "members", strings.Join(ids, ","), "partitions_moved", moved, "mine", len(ring.PartitionsOf(w.cfg.ID)))
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
// ring gave away, claim what it gave us once its holder let go or died.
func (w *Worker) ownershipLoop(ctx context.Context) {
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
			w.owned = map[int]int64{}
			w.mu.Unlock()
			w.log.Warn("lease expired before renewal; dropped every partition", "dropped", n)
		case <-w.kick:
		case <-t.C:
		}
		if err := w.reconcile(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("ownership reconcile failed", "err", err)
		}
	}
}

func (w *Worker) desired() map[int]bool {
	ring := w.ring.Load()
	out := map[int]bool{}
	if ring == nil || !w.keeper.Valid() {
		return out
	}
	for _, p := range ring.PartitionsOf(w.cfg.ID) {
		out[p] = true
	}
	return out
}

func (w *Worker) reconcile(ctx context.Context) error {
	want := w.desired()
	owned := w.ownedSnapshot()

	var release []int
	for p := range owned {
		if !want[p] {
			release = append(release, p)
		}
	}
	if len(release) > 0 {
		w.mu.Lock()
		for _, p := range release {
			delete(w.owned, p)
		}
		w.mu.Unlock()
		w.batchMu.Lock()
		w.batchMu.Unlock() //nolint:staticcheck // wait for the in-flight batch
		for _, p := range release {
			if _, err := lease.Release(ctx, w.rdb, p, w.keeper.Token()); err != nil {
				return err
			}
		}
		w.moves.Add(int64(len(release)))
		sort.Ints(release)
		w.log.Info("released partitions", "partitions", fmt.Sprint(release))
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
	var got []string
	for _, p := range claim {
		expected, ok := holders[p]
		if !ok {
			continue // its holder is alive; it releases when it sees the ring
		}
		epoch, err := lease.Claim(ctx, w.rdb, p, w.keeper.Token(), expected)
		if errors.Is(err, lease.ErrHeld) {
			continue
		}
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.owned[p] = epoch
		w.mu.Unlock()
		got = append(got, fmt.Sprintf("%d@%d", p, epoch))
	}
	if len(got) > 0 {
		w.moves.Add(int64(len(got)))
		w.log.Info("claimed partitions", "partitions(epoch)", strings.Join(got, " "))
	}
	return nil
}

// holders returns, for each partition that may be claimed now, the holder
// token the claim must replace ("" when free). Partitions whose holder's
// lease is alive are left out: that holder must release first.
func (w *Worker) holders(ctx context.Context, parts []int) (map[int]string, error) {
	pipe := w.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(parts))
	for i, p := range parts {
		cmds[i] = pipe.Get(ctx, keys.For(p).Owner())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read partition holders: %w", err)
	}
	out := map[int]string{}
	alive := map[string]*redis.IntCmd{}
	pipe = w.rdb.Pipeline()
	for i, p := range parts {
		tok := cmds[i].Val()
		out[p] = tok
		if tok != "" && tok != w.keeper.Token() && alive[tok] == nil {
			alive[tok] = pipe.Exists(ctx, keys.Lease(tok))
		}
	}
	if len(alive) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read holder leases: %w", err)
		}
	}
	for p, tok := range out {
		if c := alive[tok]; c != nil && c.Val() == 1 {
			delete(out, p)
		}
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
