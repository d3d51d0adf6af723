package discovery

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"
)

const (
	// minQueryInterval keeps a watch from spinning if Consul's index moves
	// for reasons that do not change the members.
	minQueryInterval = 100 * time.Millisecond
	firstBackoff     = 250 * time.Millisecond
	maxBackoff       = 10 * time.Second
)

// Watch follows the passing instances of the service with blocking
// queries. The first snapshot comes as soon as Consul answers; after that a
// snapshot comes only when the members (IDs, addresses, meta) change. A
// receiver that is slow only misses intermediate states, never the latest.
// Errors are logged and retried with backoff; the channel stays open until
// ctx ends.
func (c *Consul) Watch(ctx context.Context) <-chan Snapshot {
	ch := make(chan Snapshot)
	go c.watch(ctx, ch)
	return ch
}

func (c *Consul) watch(ctx context.Context, ch chan<- Snapshot) {
	defer close(ch)
	var (
		index   uint64 // WaitIndex of the next query; 0 answers at once
		last    []Member
		sent    bool
		failed  bool // the last query failed; the next snapshot is Recovered
		backoff time.Duration
	)
	// A blocking query returns within WaitTime plus Consul's jitter of
	// WaitTime/16; the slack covers an agent that hangs (SIGSTOP).
	queryTimeout := c.waitTime + c.waitTime/16 + 10*time.Second
	for {
		started := time.Now()
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		members, next, err := c.query(qctx, index)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = nextBackoff(backoff)
			c.log.Warn("membership watch: Consul query failed; retrying", "err", err, "retry_in", backoff.Round(time.Millisecond))
			// The agent may come back with a fresh, smaller index; asking
			// with the old one would block for a whole WaitTime.
			index = 0
			failed = true
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		if backoff > 0 {
			c.log.Info("membership watch: Consul answers again")
			backoff = 0
		}
		if next < index {
			failed = true // the agent's state was reset under a live connection
		}
		index = nextIndex(index, next)

		if !sent || failed || !sameMembers(last, members) {
			if dups := duplicateIDs(members); len(dups) > 0 {
				c.log.Warn("two passing instances share a worker ID; fix the worker IDs", "ids", strings.Join(dups, ","))
			}
			select {
			case ch <- Snapshot{Members: cloneMembers(members), Index: next, Recovered: failed && sent}:
			case <-ctx.Done():
				return
			}
			last, sent, failed = members, true, false
		}
		if wait := minQueryInterval - time.Since(started); wait > 0 && !sleep(ctx, wait) {
			return
		}
	}
}

// nextIndex is the WaitIndex to use after a query that asked with prev
// and got got, following Consul's rules for blocking queries: an index
// that went backwards (the agent or the cluster's state was reset) means
// start again from 0, and 0 itself must not be waited on, since that
// would answer at once forever.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	default:
		return got
	}
}

// nextBackoff doubles up to maxBackoff, with ±20% jitter so a fleet of
// workers does not retry in step.
func nextBackoff(prev time.Duration) time.Duration {
	d := 2 * prev
	if d < firstBackoff {
		d = firstBackoff
	}
	if d > maxBackoff {
		d = maxBackoff
	}
	jitter := time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	return d + jitter
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
