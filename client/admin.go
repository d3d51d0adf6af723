package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/corralhq/corral/api/workerpb"
)

// ErrUnknownWorker means no healthy member has the given worker id.
var ErrUnknownWorker = errors.New("no healthy worker with that id")

// Locate says where keys live: partition, the worker holding its claim,
// its epoch, and the owner the ring names.
func (c *Client) Locate(ctx context.Context, keys ...string) ([]*workerpb.Location, error) {
	var out []*workerpb.Location
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.Locate(ctx, &workerpb.LocateRequest{Keys: keys})
		if err != nil {
			return err
		}
		out = resp.Locations
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: locate: %w", err)
	}
	return out, nil
}

// Drain asks worker id to hand all its partitions off and claim none from
// now on; it returns how many partitions it released.
func (c *Client) Drain(ctx context.Context, id string) (int, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return 0, fmt.Errorf("client: drain %s: %w", id, err)
	}
	addr := ""
	for _, m := range ms {
		if m.ID == id {
			addr = m.Address
		}
	}
	if addr == "" {
		return 0, fmt.Errorf("client: drain %s: %w (drained already?)", id, ErrUnknownWorker)
	}
	var n int
	err = c.pool.Call(ctx, addr, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.Drain(ctx, &workerpb.DrainRequest{})
		if err != nil {
			return err
		}
		n = int(resp.Released)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("client: drain %s at %s: %w", id, addr, err)
	}
	return n, nil
}

// ReloadPlugins asks the worker at addr to relaunch its plugins from their
// binaries (hot upgrade) and returns the "name@version" now running.
func (c *Client) ReloadPlugins(ctx context.Context, addr string) ([]string, error) {
	resp, err := c.ReloadPluginsReport(ctx, addr)
	if err != nil {
		return nil, err
	}
	return resp.GetPlugins(), nil
}

// ReloadPluginsReport is ReloadPlugins returning the worker's whole
// answer: the plugins now running and, from workers that report it, every
// plugin's version and checksum before and after.
func (c *Client) ReloadPluginsReport(ctx context.Context, addr string) (*workerpb.ReloadPluginsResponse, error) {
	var out *workerpb.ReloadPluginsResponse
	err := c.pool.Call(ctx, addr, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.ReloadPlugins(ctx, &workerpb.ReloadPluginsRequest{})
		if err != nil {
			return err
		}
		out = resp
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out.GetPlugins()) == 0 {
		return nil, errors.New("worker reported no plugins")
	}
	return out, nil
}

// Reshard asks the cluster to change its partition count to n, a multiple
// of the current count (see docs/resharding.md), and reports the reshard.
// n = 0 only reports it. LongestPauseMs is the answering worker's.
func (c *Client) Reshard(ctx context.Context, n int) (*workerpb.ReshardResponse, error) {
	var out *workerpb.ReshardResponse
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		r, err := w.Reshard(ctx, &workerpb.ReshardRequest{Partitions: int32(n)})
		out = r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: reshard: %w", err)
	}
	return out, nil
}

// ReshardLongestPause is the longest any live worker froze one of its
// partitions for a split, asked of every member; members that do not
// answer are left out.
func (c *Client) ReshardLongestPause(ctx context.Context) (int64, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return 0, fmt.Errorf("client: reshard pauses: %w", err)
	}
	var longest int64
	for _, m := range ms {
		_ = c.pool.Call(ctx, m.Address, func(ctx context.Context, w workerpb.WorkerClient) error {
			r, err := w.Reshard(ctx, &workerpb.ReshardRequest{})
			if err == nil {
				longest = max(longest, r.LongestPauseMs)
			}
			return err
		})
	}
	return longest, nil
}
