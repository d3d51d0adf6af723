package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/redis/go-redis/v9"
)

// speed is how fast this machine was when the benchmark ran, so figures
// from two machines (or two moments of one shared machine) can be told
// apart: a Redis round trip and a fixed piece of CPU work on one core.
type speed struct {
	pingP50, pingP99 time.Duration // PING round trip to the cluster's Redis
	sha              time.Duration // sha256 of shaMiB MiB, best of three
}

const (
	pings  = 2000
	shaMiB = 64
)

func measureSpeed(ctx context.Context, rdb *redis.Client) (speed, error) {
	var s speed
	rtts := make([]time.Duration, 0, pings)
	for range pings {
		t := time.Now()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return s, fmt.Errorf("redis ping: %w", err)
		}
		rtts = append(rtts, time.Since(t))
	}
	slices.Sort(rtts)
	s.pingP50, s.pingP99 = rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for range 3 {
		t := time.Now()
		h := sha256.New()
		for range shaMiB {
			h.Write(buf)
		}
		h.Sum(nil)
		if d := time.Since(t); s.sha == 0 || d < s.sha {
			s.sha = d
		}
	}
	return s, nil
}

func (s speed) String() string {
	return fmt.Sprintf("Redis PING round trip p50 %.0f µs (p99 %.0f µs); sha256 of %d MiB on one core %.0f ms",
		float64(s.pingP50.Nanoseconds())/1e3, float64(s.pingP99.Nanoseconds())/1e3, shaMiB, float64(s.sha.Microseconds())/1e3)
}

// waitDrained waits until every partition's backlog (queues, outboxes,
// delayed, parked and waiting jobs) has been empty for quiet, so what is
// measured next does not share the machine with a backlog.
func waitDrained(ctx context.Context, st *store.Store, partitions int, quiet, limit time.Duration) (time.Duration, error) {
	all := make([]int, partitions)
	for p := range all {
		all[p] = p
	}
	start := time.Now()
	var emptySince time.Time
	for {
		d, err := totalDepth(ctx, st, all)
		if err != nil {
			return 0, err
		}
		now := time.Now()
		switch {
		case d > 0:
			emptySince = time.Time{}
		case emptySince.IsZero():
			emptySince = now
		case now.Sub(emptySince) >= quiet:
			return emptySince.Sub(start), nil
		}
		if now.Sub(start) > limit {
			return 0, fmt.Errorf("still %d jobs queued after %v", d, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
