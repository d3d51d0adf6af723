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
	"github.com/corralhq/corral/internal/tracing"
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
	// FullFor bounds the retries while a partition's queue is full
	// (ResourceExhausted, --max-queue-depth): a bulk load into a slow
	// cluster backs off (from Backoff, doubling up to fullMaxBackoff) and
	// sends the same ids again for this long after the first refusal,
	// then fails with ErrQueueFull. 0 does not retry a full queue.
	FullFor time.Duration
}

// fullMaxBackoff is the longest wait between tries at a full queue.
const fullMaxBackoff = 2 * time.Second

// DefaultRetry waits 50 ms, then twice as long per try up to 1 s, and
// gives up after 30 s: longer than a Redis restart from a small AOF. At a
// full queue it waits up to 10 minutes for the cluster to catch up.
func DefaultRetry() RetryConfig {
	return RetryConfig{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, For: 30 * time.Second, FullFor: 10 * time.Minute}
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
	if r.FullFor < 0 {
		errs = append(errs, fmt.Errorf("the wait at a full queue must not be negative, got %v (0 does not wait)", r.FullFor))
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
	var fullSince time.Time
	fullWait := c.retry.Backoff
	for {
		err := op(ctx)
		if q, full := IsQueueFull(err); full {
			// The cluster is healthy but behind: back off and send the
			// same ids again, for longer than an outage is waited out.
			now := time.Now()
			if fullSince.IsZero() {
				fullSince = now
			}
			d := fullWait/2 + rand.N(fullWait/2+1)
			if ctx.Err() != nil || now.Add(d).After(fullSince.Add(c.retry.FullFor)) {
				return fmt.Errorf("%w for %v: %w", ErrQueueFull, now.Sub(fullSince).Round(time.Millisecond), err)
			}
			if c.onFull != nil {
				c.onFull(q)
			}
			c.log.Debug("client: a partition's queue is full, sending again later", "partition", q.Partition, "depth", q.Depth, "in", d)
			if !sleepCtx(ctx, d) {
				return err
			}
			fullWait = min(2*fullWait, fullMaxBackoff)
			continue
		}
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
	jobs = withTrace(withIDs(jobs), tracing.FromContext(ctx))
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

// withTrace has the jobs without a traceparent carry tp, the caller's
// span: a traced worker then puts the jobs' spans in the caller's trace.
// Without a span in the caller's context (tp ""), jobs go as they are.
func withTrace(jobs []*workerpb.Job, tp string) []*workerpb.Job {
	if tp == "" {
		return jobs
	}
	var out []*workerpb.Job
	for i, j := range jobs {
		if j.Traceparent != "" {
			continue
		}
		if out == nil {
			out = append([]*workerpb.Job(nil), jobs...)
		}
		j = proto.Clone(j).(*workerpb.Job)
		j.Traceparent = tp
		out[i] = j
	}
	if out == nil {
		return jobs
	}
	return out
}

// sleepCtx waits d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
