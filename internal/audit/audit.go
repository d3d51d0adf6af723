// Package audit reads the commit audit stream a worker writes with
// --audit, and checks the single-writer and exactly-once invariants
// against it: per partition, accepted epochs never decrease (two owners'
// commits never interleave), one epoch number is never accepted under two
// grants, and no job id commits twice. It also measures
// failover: from a fault to the first commit accepted under a newer epoch.
//
// The stream is capped (worker --audit-max), so on a long run it holds
// each partition's newest commits only. The checks then hold for what is
// kept: epochs never go back within it and no id commits twice within it.
// They cannot see a commit the cap dropped: not whether the first kept
// epoch went back from a dropped one, not an id committed once before the
// cap and again after, and an id whose only commit was dropped looks
// missing. Check.Trimmed says how much was dropped.
package audit

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/redis/go-redis/v9"
)

// Log is every partition's audit stream.
type Log struct {
	Partitions map[int][]store.AuditEntry
	// Trimmed is how many of a partition's entries the cap dropped.
	Trimmed map[int]int64
}

// Read loads the audit streams of partitions 0..n-1.
func Read(ctx context.Context, rdb redis.UniversalClient, n int) (*Log, error) {
	st := store.New(rdb, store.Config{Partitions: n})
	l := &Log{Partitions: make(map[int][]store.AuditEntry, n), Trimmed: map[int]int64{}}
	for p := 0; p < n; p++ {
		es, trimmed, err := st.AuditLog(ctx, p, time.Time{})
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if len(es) > 0 {
			l.Partitions[p] = es
		}
		if trimmed > 0 {
			l.Trimmed[p] = trimmed
		}
	}
	return l, nil
}

// Check is what the audit shows.
type Check struct {
	Commits     int            // audited job commits
	Count       map[string]int // commits per job id
	Duplicated  int            // ids committed more than once
	Regressions []string       // partitions where an accepted epoch went back
	Trimmed     int64          // commits the cap dropped before they were read
	// Regrants lists epochs accepted under two different grants of one
	// partition: a grant issued twice.
	Regrants []string
}

// OK reports whether the invariants hold over the entries kept.
func (c Check) OK() bool {
	return c.Duplicated == 0 && len(c.Regressions) == 0 && len(c.Regrants) == 0
}

// Complete reports whether the cap dropped nothing, so the check covers
// every audited commit and Missing is exact.
func (c Check) Complete() bool { return c.Trimmed == 0 }

// Check verifies the invariants.
func (l *Log) Check() Check {
	c := Check{Count: map[string]int{}}
	for p, es := range l.Partitions {
		var last int64
		nonces := map[int64]string{}
		for _, e := range es {
			if n, ok := nonces[e.Epoch]; ok && n != e.Nonce {
				c.Regrants = append(c.Regrants, fmt.Sprintf("partition %d: epoch %d accepted under grants %s and %s (job %s)", p, e.Epoch, n, e.Nonce, e.JobID))
			}
			nonces[e.Epoch] = e.Nonce
			if e.Epoch < last {
				c.Regressions = append(c.Regressions, fmt.Sprintf("partition %d: epoch %d accepted after %d (job %s)", p, e.Epoch, last, e.JobID))
			}
			last = max(last, e.Epoch)
			c.Count[e.JobID]++
			if c.Count[e.JobID] == 2 {
				c.Duplicated++
			}
			c.Commits++
		}
	}
	for _, t := range l.Trimmed {
		c.Trimmed += t
	}
	sort.Strings(c.Regressions)
	sort.Strings(c.Regrants)
	return c
}

// Missing lists the ids with no commit in the audit. Unless Complete,
// some may have committed in entries the cap dropped.
func (c Check) Missing(ids []string) []string {
	var out []string
	for _, id := range ids {
		if c.Count[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// Failover returns, for each partition in before that changed hands, the
// time from fault to its first commit accepted at or after fault under an
// epoch newer than the one it had before. Partitions that committed
// nothing afterwards are left out.
func (l *Log) Failover(fault time.Time, before map[int]int64) []time.Duration {
	var out []time.Duration
	from := fault.Truncate(time.Millisecond)
	for p, epoch := range before {
		for _, e := range l.Partitions[p] {
			if e.Epoch > epoch && !e.At.Before(from) {
				out = append(out, max(e.At.Sub(fault), 0))
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Holders reads the holder and epoch of partitions 0..n-1.
func Holders(ctx context.Context, rdb redis.UniversalClient, n int) (map[int]lease.Holder, error) {
	parts := make([]int, n)
	for p := range parts {
		parts[p] = p
	}
	return lease.HoldersOf(ctx, rdb, parts)
}

// HeldBy returns the epochs of the partitions worker id holds.
func HeldBy(holders map[int]lease.Holder, id string) map[int]int64 {
	out := map[int]int64{}
	for p, h := range holders {
		if lease.WorkerID(h.Token) == id {
			out[p] = h.Epoch
		}
	}
	return out
}

// Grants is how many ownership grants happened between two readings of
// the holders: the sum of epoch increments.
func Grants(before, after map[int]lease.Holder) int64 {
	var n int64
	for p, h := range after {
		n += h.Epoch - before[p].Epoch
	}
	return n
}

// FencedRejections is how many commits Redis refused as stale since it
// started, from its error statistics: the server's own count, including
// commits whose sender gave up before the answer came.
func FencedRejections(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "errorstats").Result()
	if err != nil {
		return 0, fmt.Errorf("audit: read Redis error statistics: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_FENCED:count="); ok {
			return strconv.ParseInt(rest, 10, 64)
		}
	}
	return 0, nil
}

// Percentiles summarises sorted durations as p50/p99/max.
func Percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "n/a (no moved partition committed)"
	}
	q := func(f float64) time.Duration {
		i := int(math.Ceil(f*float64(len(d)))) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	r := func(x time.Duration) string { return x.Round(time.Millisecond).String() }
	return fmt.Sprintf("p50 %s p99 %s max %s (%d partitions)", r(q(0.5)), r(q(0.99)), r(d[len(d)-1]), len(d))
}
