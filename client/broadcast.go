package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/jobid"
	"github.com/corralhq/corral/internal/peer"
)

// Broadcast runs a broadcast handler (sdk.Broadcast) once on every live
// worker of group, or on every live worker when group is "", as the
// members are when it starts. id names the broadcast: a member runs an id
// once, however often it is sent ("" makes one). timeout (0: 10 s) bounds
// each member's run; a member that does not answer in time is reported
// UNREACHABLE. The reply lists each member's outcome, result or error.
func (c *Client) Broadcast(ctx context.Context, group, handler string, payload []byte, id string, timeout time.Duration) (*workerpb.BroadcastResponse, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if id == "" {
		id = jobid.New(time.Now()) // the same id on a second worker, if the first fails
	}
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	req := &workerpb.BroadcastRequest{Group: group, Handler: handler, Payload: payload, Id: id, TimeoutMs: timeout.Milliseconds()}
	// Not through the breakers, whose deadline is a short call's: the
	// worker that fans out waits up to timeout for the members.
	var last error
	start := int(c.next.Add(1))
	for i := range ms {
		m := ms[(start+i)%len(ms)]
		cctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
		var out *workerpb.BroadcastResponse
		err := c.pool.CallDirect(cctx, m.Address, func(ctx context.Context, w workerpb.WorkerClient) error {
			var err error
			out, err = w.Broadcast(ctx, req)
			return err
		})
		cancel()
		if err == nil || !peer.Fault(err) || ctx.Err() != nil {
			return out, err
		}
		last = fmt.Errorf("worker %s (%s): %w", m.ID, m.Address, err)
	}
	if last == nil {
		last = errors.New("no healthy worker in Consul")
	}
	return nil, last
}
