package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/sharding"
)

// Submitter sends many Submit calls, each to the next healthy worker in
// turn, so a large submission spreads over the cluster. It asks Consul for
// the workers once, not once per call, and again only when every worker it
// knows failed a call. It is safe for concurrent use.
type Submitter struct {
	c          *Client
	partitions int
	next       atomic.Uint64
	mu         sync.Mutex
	members    []discovery.Member
}

// NewSubmitter lists the healthy workers and asks one of them for the
// cluster's partition count.
func (c *Client) NewSubmitter(ctx context.Context) (*Submitter, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	s := &Submitter{c: c, members: ms}
	err = c.retrying(ctx, func(ctx context.Context) error {
		return s.each(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			resp, err := w.Status(ctx, &workerpb.StatusRequest{})
			if err == nil {
				s.partitions = int(resp.Partitions)
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("client: read the partition count: %w", err)
	}
	if s.partitions < 1 {
		return nil, fmt.Errorf("client: a worker reports %d partitions", s.partitions)
	}
	return s, nil
}

// Partitions is the cluster's partition count P.
func (s *Submitter) Partitions() int { return s.partitions }

// PartitionOf is the partition of key: the workers compute the same.
func (s *Submitter) PartitionOf(key string) int { return sharding.PartitionOf(key, s.partitions) }

// Submit is Client.Submit on the next worker in turn; a worker that is
// down or whose breaker is open is passed over for the next, and the call
// is retried as Client.Submit's is.
func (s *Submitter) Submit(ctx context.Context, jobs []*workerpb.Job) ([]*workerpb.SubmitResult, error) {
	return s.c.submit(ctx, jobs, s.each)
}

// each runs fn on the next known worker, moving on while workers are down
// or their breakers open; when all fail, it asks Consul for the workers
// again and tries those once more.
func (s *Submitter) each(ctx context.Context, fn func(ctx context.Context, w workerpb.WorkerClient) error) error {
	var last error
	for round := 0; round < 2; round++ {
		s.mu.Lock()
		ms := s.members
		s.mu.Unlock()
		done, err := s.c.onEach(ctx, ms, int(s.next.Add(1)), fn)
		if done {
			return err
		}
		last = err
		fresh, err := s.c.Members(ctx)
		if err != nil {
			return errors.Join(last, err)
		}
		s.mu.Lock()
		s.members = fresh
		s.mu.Unlock()
	}
	return last
}

// waitSlice bounds one waiting GetResult call, well inside the per-call
// deadline of the breakers; a longer wait is several calls.
const waitSlice = time.Second

// Results reads jobs' status and results. With wait > 0 it waits up to
// that long for unfinished jobs; what is still QUEUED then is not done.
func (c *Client) Results(ctx context.Context, wait time.Duration, ids ...string) ([]*workerpb.JobResult, error) {
	deadline := time.Now().Add(wait)
	for {
		slice := min(time.Until(deadline), waitSlice)
		var out []*workerpb.JobResult
		err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			resp, err := w.GetResult(ctx, &workerpb.GetResultRequest{Ids: ids, WaitMs: max(slice, 0).Milliseconds()})
			if err != nil {
				return err
			}
			out = resp.Results
			return nil
		})
		if err != nil || wait <= 0 || time.Until(deadline) <= 0 || !pending(out) {
			return out, err
		}
	}
}

func pending(rs []*workerpb.JobResult) bool {
	for _, r := range rs {
		if r.State == workerpb.JobResult_QUEUED {
			return true
		}
	}
	return false
}

// DeadLetters pages through the dead-letter store: limit per page (0 =
// 100), after the cursor a previous page returned. With ids it shows those
// only. next is "" on the last page.
func (c *Client) DeadLetters(ctx context.Context, limit int, after string, ids ...string) (dead []*workerpb.DeadLetter, next string, err error) {
	err = c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.ListDeadLetters(ctx, &workerpb.ListDeadLettersRequest{Limit: int32(limit), After: after, Ids: ids})
		if err != nil {
			return err
		}
		dead, next = resp.Dead, resp.Next
		return nil
	})
	return dead, next, err
}

// ReplayDeadLetters submits dead letters again with fresh attempts (all of
// them when all is set) and returns how many were replayed.
func (c *Client) ReplayDeadLetters(ctx context.Context, all bool, ids ...string) (int64, error) {
	var n int64
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.ReplayDeadLetters(ctx, &workerpb.DeadLetterIDs{Ids: ids, All: all})
		if err != nil {
			return err
		}
		n = resp.Count
		return nil
	})
	return n, err
}

// PurgeDeadLetters deletes dead letters for good (all of them when all is
// set) and returns how many were deleted.
func (c *Client) PurgeDeadLetters(ctx context.Context, all bool, ids ...string) (int64, error) {
	var n int64
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.PurgeDeadLetters(ctx, &workerpb.DeadLetterIDs{Ids: ids, All: all})
		if err != nil {
			return err
		}
		n = resp.Count
		return nil
	})
	return n, err
}
