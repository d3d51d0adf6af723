package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/internal/peer"
	"google.golang.org/protobuf/proto"
)

// RetryConfig says how Submit and Call try again while no worker can take
// a call: every worker is down or slow, or answers Unavailable because its
// Redis is loading, restarting or out of reach. Each try sends the same
// job ids, so a job that an earlier try did enqueue is not enqueued twice.
type RetryConfig struct {
	// Backoff is the wait after the first failed try; it doubles per try
	// up to MaxBackoff, and each wait is jittered to half of it or more.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// For bounds the retries: no try starts later than this after the
	// first one. The context's deadline bounds them as well.
	For time.Duration
}

// DefaultRetry waits 50 ms, then twice as long per try up to 1 s, and
// gives up after 30 s: longer than a Redis restart from a small AOF.
func DefaultRetry() RetryConfig {
	return RetryConfig{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, For: 30 * time.Second}
}

// Validate explains what is wrong with r.
func (r RetryConfig) Validate() error {
	var errs []error
	if r.Backoff <= 0 || r.MaxBackoff < r.Backoff {
		errs = append(errs, fmt.Errorf("retry backoff (%v) must be positive and at most the backoff cap (%v)", r.Backoff, r.MaxBackoff))
	}
	if r.For < 0 {
		errs = append(errs, fmt.Errorf("retry duration must not be negative, got %v (0 tries once)", r.For))
	}
	return errors.Join(errs...)
}

// retrying runs op until it succeeds, fails for a reason of the request's
// own, ctx ends, or the retry duration has passed; it returns op's last
// error.
func (c *Client) retrying(ctx context.Context, op func(ctx context.Context) error) error {
	giveUp := time.Now().Add(c.retry.For)
	wait := c.retry.Backoff
	var cause error // the last failure that came from a worker, not a breaker
	for {
		err := op(ctx)
		if err == nil || !peer.Fault(err) || errors.Is(err, ErrTLS) {
			return err
		}
		if !errors.Is(err, breaker.ErrOpen) && !errors.Is(err, ErrNoWorkers) {
			cause = err
		}
		d := wait/2 + rand.N(wait/2+1)
		if ctx.Err() != nil || time.Until(giveUp) < d {
			if cause != nil && cause != err {
				return fmt.Errorf("%w (the last worker to answer: %v)", err, cause)
			}
			return err
		}
		c.log.Debug("client: no worker could take the call, trying again", "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, c.retry.MaxBackoff)
	}
}

// submit names the jobs that have no id, then sends them through send,
// again and again while no worker can take them.
func (c *Client) submit(ctx context.Context, jobs []*workerpb.Job, send func(context.Context, func(context.Context, workerpb.WorkerClient) error) error) ([]*workerpb.SubmitResult, error) {
	jobs = withIDs(jobs)
	req := &workerpb.SubmitRequest{Jobs: jobs}
	var out []*workerpb.SubmitResult
	tries := 0
	err := c.retrying(ctx, func(ctx context.Context) error {
		return send(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			tries++
			resp, err := w.Submit(ctx, req)
			if err != nil {
				return err
			}
			out = resp.Results
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if tries > 1 {
		// An earlier try may have enqueued the jobs before it failed (its
		// reply lost or late): a duplicate now is then this call's own job.
		for _, r := range out {
			r.Duplicate = false
		}
	}
	return out, nil
}

// withIDs returns jobs with an id for every job, named here rather than by
// the worker, so that a call sent again to another worker is deduplicated.
// The caller's jobs are not changed.
func withIDs(jobs []*workerpb.Job) []*workerpb.Job {
	var out []*workerpb.Job
	for i, j := range jobs {
		if j.Id != "" {
			continue
		}
		if out == nil {
			out = append([]*workerpb.Job(nil), jobs...)
		}
		j = proto.Clone(j).(*workerpb.Job)
		j.Id = NewJobID()
		out[i] = j
	}
	if out == nil {
		return jobs
	}
	return out
}
