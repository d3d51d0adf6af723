package client

import (
	"context"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/jobid"
	"google.golang.org/protobuf/proto"
)

// Call runs one job synchronously on the owner of its key and returns the
// reply. Any worker takes it and routes it; the caller's deadline travels
// with it. The job gets an id here when it has none, so that trying
// another worker after a failure, or again after a backoff while no
// worker can take it (see RetryConfig), is the same job, applied once.
func (c *Client) Call(ctx context.Context, job *workerpb.Job) (*workerpb.CallResponse, error) {
	job = proto.Clone(job).(*workerpb.Job)
	if job.Id == "" {
		job.Id = NewJobID()
	}
	var out *workerpb.CallResponse
	err := c.retrying(ctx, func(ctx context.Context) error {
		req := &workerpb.CallRequest{Job: job}
		if dl, ok := ctx.Deadline(); ok {
			req.TimeoutMs = time.Until(dl).Milliseconds()
		}
		return c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			resp, err := w.Call(ctx, req)
			out = resp
			return err
		})
	})
	return out, err
}

// NewJobID returns a random job id that sorts by creation time, of the
// form the workers give a job submitted without one.
func NewJobID() string { return jobid.New(time.Now()) }
