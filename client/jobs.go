package client

import (
	"context"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

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
