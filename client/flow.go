package client

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/api/workerpb"
)

// Limits changes a handler's cluster-wide limits: only the fields set
// change. A concurrency of 0 goes back to what the handler declares; a
// rate of 0 lifts the rate limit (a burst of 0 is a second's worth).
type Limits struct {
	Concurrency *int
	Rate        *float64
	Burst       int
	Clear       bool // drop every runtime limit first (not a pause)
}

// PauseHandler pauses handler across the cluster: its jobs wait, without
// spending attempts, until ResumeHandler. Needs the admin role.
func (c *Client) PauseHandler(ctx context.Context, handler string) (*workerpb.HandlerFlow, error) {
	return c.flowCall(ctx, "pause", func(ctx context.Context, w workerpb.WorkerClient) (*workerpb.HandlerFlow, error) {
		return w.PauseHandler(ctx, &workerpb.HandlerFlowRequest{Handler: handler})
	})
}

// ResumeHandler lifts a pause; the waiting jobs go on in per-key order.
func (c *Client) ResumeHandler(ctx context.Context, handler string) (*workerpb.HandlerFlow, error) {
	return c.flowCall(ctx, "resume", func(ctx context.Context, w workerpb.WorkerClient) (*workerpb.HandlerFlow, error) {
		return w.ResumeHandler(ctx, &workerpb.HandlerFlowRequest{Handler: handler})
	})
}

// LimitHandler sets or lifts handler's cluster-wide limits.
func (c *Client) LimitHandler(ctx context.Context, handler string, l Limits) (*workerpb.HandlerFlow, error) {
	req := &workerpb.HandlerFlowRequest{Handler: handler, Clear: l.Clear, Burst: int32(l.Burst)}
	if l.Concurrency != nil {
		req.SetConcurrency, req.Concurrency = true, int32(*l.Concurrency)
	}
	if l.Rate != nil {
		req.SetRate, req.Rate = true, *l.Rate
	}
	return c.flowCall(ctx, "limit", func(ctx context.Context, w workerpb.WorkerClient) (*workerpb.HandlerFlow, error) {
		return w.LimitHandler(ctx, req)
	})
}

// HandlerFlows lists the handlers paused or limited.
func (c *Client) HandlerFlows(ctx context.Context) ([]*workerpb.HandlerFlow, error) {
	var out []*workerpb.HandlerFlow
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.HandlerFlows(ctx, &workerpb.HandlerFlowsRequest{})
		if err != nil {
			return err
		}
		out = resp.Flows
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: handler flows: %w", err)
	}
	return out, nil
}

func (c *Client) flowCall(ctx context.Context, what string, fn func(ctx context.Context, w workerpb.WorkerClient) (*workerpb.HandlerFlow, error)) (*workerpb.HandlerFlow, error) {
	var out *workerpb.HandlerFlow
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		f, err := fn(ctx, w)
		out = f
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: %s handler: %w", what, err)
	}
	return out, nil
}

// OnQueueFull sets what hears of each refusal by a full queue, as
// Config.OnQueueFull; set it before the client's first call.
func (c *Client) OnQueueFull(f func(QueueFull)) { c.onFull = f }
