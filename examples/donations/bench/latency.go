package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

// sampleEvery is how many submitted donations share one latency sample.
const sampleEvery = 20

// latencies are the sampled times from a donation's submission to its own
// commit and to the commit of the campaign credit it emits, and the rate
// the donations were in fact submitted at (lower than asked when enqueue
// cannot keep up).
type latencies struct {
	donation, credit []time.Duration
	submitted        float64
}

// sample is one donation whose commits are being watched for.
type sample struct {
	submitted        time.Time
	donation, credit string // job ids of the donation and of the credit it emits
	donPart, crPart  int    // their partitions
	donDone, crDone  bool
}

// latencyUnderLoad submits jobs at rate donations/s beside the running
// workers and watches a sample of them: every few milliseconds it reads
// the sampled job records' status, so a figure is at most that much late.
func latencyUnderLoad(ctx context.Context, st *store.Store, jobs []*workerpb.Job, partitions, rate int) (latencies, error) {
	var lat latencies
	if len(jobs) == 0 || rate < 1 {
		return lat, nil
	}
	var open []*sample
	start := time.Now()
	next := 0
	deadline := start.Add(time.Duration(float64(len(jobs))/float64(rate)*float64(time.Second)) + time.Minute)
	for next < len(jobs) || len(open) > 0 {
		now := time.Now()
		if now.After(deadline) {
			return lat, fmt.Errorf("latency: %d sampled donations not committed a minute after the load ended", len(open))
		}
		due := min(len(jobs), int(now.Sub(start).Seconds()*float64(rate))+1)
		if due > next {
			batch := make([]store.Job, 0, due-next)
			for i := next; i < due; i++ {
				j := jobs[i]
				batch = append(batch, store.Job{ID: j.Id, Handler: j.Handler, Key: j.Key, Payload: j.Payload, Attempt: 1,
					SubmittedAt: now.UnixMilli(), Partition: sharding.PartitionOf(j.Key, partitions)})
			}
			res, err := st.Enqueue(ctx, batch)
			if err != nil {
				return lat, err
			}
			for _, r := range res {
				if r.Err != nil {
					return lat, r.Err
				}
			}
			for i := next; i < due; i++ {
				if i%sampleEvery != 0 {
					continue
				}
				var d ledger.Donation
				if err := json.Unmarshal(jobs[i].Payload, &d); err != nil {
					return lat, fmt.Errorf("latency: donation %q: %w", jobs[i].Id, err)
				}
				open = append(open, &sample{submitted: now,
					donation: jobs[i].Id, donPart: sharding.PartitionOf(jobs[i].Key, partitions),
					credit: store.EmittedID(jobs[i].Id, 0), crPart: sharding.PartitionOf(d.Campaign, partitions)})
			}
			next = due
			if next == len(jobs) {
				lat.submitted = float64(len(jobs)) / time.Since(start).Seconds()
			}
		}
		if len(open) > 0 {
			var err error
			if open, err = poll(ctx, st, open, &lat); err != nil {
				return lat, err
			}
		}
		time.Sleep(time.Millisecond)
	}
	return lat, nil
}

// poll reads whether the open samples' jobs are done, records the commits
// it sees and returns the samples still open.
func poll(ctx context.Context, st *store.Store, open []*sample, lat *latencies) ([]*sample, error) {
	var ids []string
	var parts []int
	for _, s := range open {
		if !s.donDone {
			ids, parts = append(ids, s.donation), append(parts, s.donPart)
		}
		if !s.crDone {
			ids, parts = append(ids, s.credit), append(parts, s.crPart)
		}
	}
	done, err := st.Done(ctx, ids, parts)
	if err != nil {
		return open, fmt.Errorf("latency: %w", err)
	}
	now := time.Now()
	left := open[:0]
	for _, s := range open {
		if !s.donDone {
			if done[0] {
				s.donDone = true
				lat.donation = append(lat.donation, now.Sub(s.submitted))
			}
			done = done[1:]
		}
		if !s.crDone {
			if done[0] {
				s.crDone = true
				lat.credit = append(lat.credit, now.Sub(s.submitted))
			}
			done = done[1:]
		}
		if !s.donDone || !s.crDone {
			left = append(left, s)
		}
	}
	return left, nil
}

// ms formats the q quantile of ds in milliseconds.
func ms(ds []time.Duration, q float64) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, int(q*float64(len(s))))
	return fmt.Sprintf("%.1f ms", float64(s[i].Microseconds())/1000)
}
