package client

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/api/workerpb"
	"google.golang.org/grpc"
)

// AddSchedule stores a schedule (cron in the cluster): the owner of the
// partition of its name fires its ticks as jobs with ids s~NAME~UNIX.
// Adding the same definition again changes nothing (created is false);
// another definition under the name is refused (AlreadyExists), so
// sending it again after a timeout is safe.
func (c *Client) AddSchedule(ctx context.Context, s *workerpb.Schedule) (*workerpb.Schedule, bool, error) {
	var out *workerpb.AddScheduleResponse
	err := c.retrying(ctx, func(ctx context.Context) error {
		return c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			resp, err := w.AddSchedule(ctx, &workerpb.AddScheduleRequest{Schedule: s})
			out = resp
			return err
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("client: add schedule %s: %w", s.GetName(), err)
	}
	return out.Schedule, out.Created, nil
}

// Schedules lists the named schedules, or every one, sorted by name; a
// name with no schedule is left out.
func (c *Client) Schedules(ctx context.Context, names ...string) ([]*workerpb.Schedule, error) {
	var out []*workerpb.Schedule
	err := c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
		resp, err := w.ListSchedules(ctx, &workerpb.ListSchedulesRequest{Names: names})
		if err != nil {
			return err
		}
		out = resp.Schedules
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: list schedules: %w", err)
	}
	return out, nil
}

// PauseSchedule stops schedule name's ticks until it is resumed.
func (c *Client) PauseSchedule(ctx context.Context, name string) (*workerpb.Schedule, error) {
	return c.scheduleCall(ctx, "pause", name, workerpb.WorkerClient.PauseSchedule)
}

// ResumeSchedule starts schedule name's ticks again from the next one; the
// ticks of the pause are not fired.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (*workerpb.Schedule, error) {
	return c.scheduleCall(ctx, "resume", name, workerpb.WorkerClient.ResumeSchedule)
}

func (c *Client) scheduleCall(ctx context.Context, verb, name string,
	call func(workerpb.WorkerClient, context.Context, *workerpb.ScheduleName, ...grpc.CallOption) (*workerpb.Schedule, error)) (*workerpb.Schedule, error) {
	var out *workerpb.Schedule
	err := c.retrying(ctx, func(ctx context.Context) error {
		return c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			resp, err := call(w, ctx, &workerpb.ScheduleName{Name: name})
			out = resp
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("client: %s schedule %s: %w", verb, name, err)
	}
	return out, nil
}

// DeleteSchedule removes schedule name; deleted is false when there was
// none (deleted already, by an earlier try of this call or by another).
func (c *Client) DeleteSchedule(ctx context.Context, name string) (bool, error) {
	var deleted bool
	err := c.retrying(ctx, func(ctx context.Context) error {
		return c.any(ctx, func(ctx context.Context, w workerpb.WorkerClient) error {
			resp, err := w.DeleteSchedule(ctx, &workerpb.ScheduleName{Name: name})
			if err == nil {
				deleted = deleted || resp.Deleted
			}
			return err
		})
	})
	if err != nil {
		return false, fmt.Errorf("client: delete schedule %s: %w", name, err)
	}
	return deleted, nil
}
