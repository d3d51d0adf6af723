package client

import (
	"context"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/jobid"
)

// ListEntities asks a worker for one page of the keys of an entity type
// that have state (prefix: only keys starting with it; limit 0: 1000;
// after: the Next of the page before, "" from the start). Pages go
// partition by partition; a key present for the whole listing is in
// exactly one page. resp.Next is "" after the last page.
func (c *Client) ListEntities(ctx context.Context, entity, prefix string, limit int, after string) (*workerpb.ListEntitiesResponse, error) {
	var out *workerpb.ListEntitiesResponse
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.ListEntities(ctx, &workerpb.ListEntitiesRequest{Entity: entity, Prefix: prefix, Limit: int32(limit), After: after})
		out = resp
		return err
	})
	return out, err
}

// DeleteEntity deletes an entity's state, in order with its key's jobs:
// the delete is committed by the key's owner after the jobs of the key
// submitted before it and before those submitted after. id names the
// delete (a repeat with the same id deletes once; "" makes one); the
// reply comes once it committed, or with state QUEUED when wait (0: 10 s)
// ran out first.
func (c *Client) DeleteEntity(ctx context.Context, entity, key, id string, wait time.Duration) (*workerpb.DeleteEntityResponse, error) {
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if id == "" {
		id = jobid.New(time.Now()) // sent again with the same id, it deletes once
	}
	deadline := time.Now().Add(wait)
	var out *workerpb.DeleteEntityResponse
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.DeleteEntity(ctx, &workerpb.DeleteEntityRequest{Entity: entity, Key: key, Id: id,
			WaitMs: min(wait, waitSlice).Milliseconds()})
		out = resp
		return err
	})
	if err != nil || out.State != workerpb.JobResult_QUEUED || time.Until(deadline) <= 0 {
		return out, err
	}
	// Waited in slices, as Results does, within the breakers' deadline.
	rs, err := c.Results(ctx, time.Until(deadline), out.Id)
	if err == nil && len(rs) == 1 {
		out.State = rs[0].State
	}
	return out, err
}
