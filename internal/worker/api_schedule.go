package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The schedule RPCs write through the store to the partition of the
// schedule's name, on whichever worker takes them; that partition's
// owner fires the ticks (see scheduler), and hears of a change within
// schedulePoll.

// scheduleIDCheck stands in for a tick's id when a schedule's job is
// checked like a submitted one: a tick's real id holds a character user
// ids may not.
const scheduleIDCheck = "schedule-check"

// AddSchedule validates a schedule as a submitted job is validated (its
// handler served, its key and payload what the handler takes), and its
// cron expression, time zone and catch-up, then stores it.
func (a *API) AddSchedule(ctx context.Context, req *workerpb.AddScheduleRequest) (*workerpb.AddScheduleResponse, error) {
	in := req.GetSchedule()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "no schedule given")
	}
	rec, err := a.scheduleRecord(in, time.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sc, created, err := a.store.AddSchedule(ctx, a.schedulePartition(rec.Name), rec)
	switch {
	case errors.Is(err, store.ErrScheduleExists):
		return nil, status.Errorf(codes.AlreadyExists, "schedule %q exists with another definition (%s); delete it first to replace it", rec.Name, describeSchedule(sc.ScheduleRecord))
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &workerpb.AddScheduleResponse{Schedule: scheduleInfo(sc), Created: created}, nil
}

// scheduleRecord checks a schedule's definition and makes its record.
func (a *API) scheduleRecord(in *workerpb.Schedule, now time.Time) (store.ScheduleRecord, error) {
	if err := schedule.ValidateName(in.Name); err != nil {
		return store.ScheduleRecord{}, err
	}
	spec, err := schedule.Parse(in.Cron, in.Tz)
	if err != nil {
		return store.ScheduleRecord{}, err
	}
	mode, err := schedule.ParseCatchUp(in.CatchUp)
	if err != nil {
		return store.ScheduleRecord{}, err
	}
	job := &workerpb.Job{Handler: in.Handler, Key: in.Key, Payload: in.Payload}
	if err := a.intake.admit(job, scheduleIDCheck, a.intake.partitionOf(in.Key), a.intake.handlers()); err != nil {
		return store.ScheduleRecord{}, fmt.Errorf("schedule %q: its job is refused: %w", in.Name, err)
	}
	// Stored compact, so the same definition added again compares equal.
	var payload bytes.Buffer
	if err := json.Compact(&payload, in.Payload); err != nil {
		return store.ScheduleRecord{}, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	return store.ScheduleRecord{Name: in.Name, Cron: spec.Expr(), TZ: in.Tz, Handler: in.Handler, Key: in.Key,
		Payload: payload.Bytes(), CatchUp: mode.String(), CreatedMs: now.UnixMilli(), SinceMs: now.UnixMilli()}, nil
}

// schedulePartition is the partition a schedule lives in.
func (a *API) schedulePartition(name string) int {
	return a.report.cfg.routing().PartitionOf(name)
}

// ListSchedules lists every schedule, or the named ones, sorted by name.
func (a *API) ListSchedules(ctx context.Context, req *workerpb.ListSchedulesRequest) (*workerpb.ListSchedulesResponse, error) {
	var parts []int
	want := map[string]bool{}
	if len(req.Names) == 0 {
		parts = make([]int, a.report.cfg.routing().Partitions())
		for p := range parts {
			parts[p] = p
		}
	} else {
		seen := map[int]bool{}
		for _, n := range req.Names {
			if err := schedule.ValidateName(n); err != nil {
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
			want[n] = true
			if p := a.schedulePartition(n); !seen[p] {
				seen[p] = true
				parts = append(parts, p)
			}
		}
	}
	scs, err := a.store.Schedules(ctx, parts)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	resp := &workerpb.ListSchedulesResponse{}
	for _, sc := range scs {
		if len(want) == 0 || want[sc.Name] {
			resp.Schedules = append(resp.Schedules, scheduleInfo(sc))
		}
	}
	return resp, nil
}

// PauseSchedule stops a schedule's ticks from now on: a tick its owner is
// firing at this moment is refused by the tick script, which checks the
// definition it read is still the stored one.
func (a *API) PauseSchedule(ctx context.Context, req *workerpb.ScheduleName) (*workerpb.Schedule, error) {
	return a.setPaused(ctx, req.Name, true)
}

// ResumeSchedule starts a paused schedule's ticks again, from the first
// one after now: the ticks of the pause are not caught up.
func (a *API) ResumeSchedule(ctx context.Context, req *workerpb.ScheduleName) (*workerpb.Schedule, error) {
	return a.setPaused(ctx, req.Name, false)
}

func (a *API) setPaused(ctx context.Context, name string, paused bool) (*workerpb.Schedule, error) {
	if err := schedule.ValidateName(name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sc, err := a.store.SetSchedulePaused(ctx, a.schedulePartition(name), name, paused, time.Now())
	switch {
	case errors.Is(err, store.ErrNoSchedule):
		return nil, status.Errorf(codes.NotFound, "no schedule %q", name)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return scheduleInfo(sc), nil
}

// DeleteSchedule removes a schedule; a tick being fired at this moment is
// refused, as for a pause. Deleting a schedule that is not there is not an
// error: deleted is false.
func (a *API) DeleteSchedule(ctx context.Context, req *workerpb.ScheduleName) (*workerpb.DeleteScheduleResponse, error) {
	if err := schedule.ValidateName(req.Name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ok, err := a.store.DeleteSchedule(ctx, a.schedulePartition(req.Name), req.Name)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &workerpb.DeleteScheduleResponse{Deleted: ok}, nil
}

// scheduleInfo is a stored schedule as the API shows it, with its next
// tick (zero when paused).
func scheduleInfo(sc store.StoredSchedule) *workerpb.Schedule {
	out := &workerpb.Schedule{Name: sc.Name, Cron: sc.Cron, Tz: sc.TZ, Handler: sc.Handler, Key: sc.Key,
		Payload: sc.Payload, CatchUp: sc.CatchUp, Paused: sc.Paused, CreatedMs: sc.CreatedMs,
		Partition: int32(sc.Partition), LastTickMs: sc.Last.Through * 1000, LastFiredMs: sc.Last.Fired * 1000}
	if sc.Paused {
		return out
	}
	if spec, err := schedule.Parse(sc.Cron, sc.TZ); err == nil {
		// A tick in the past is due and not fired yet: its owner is about
		// to, or there is none.
		if next := spec.Next(ticksAfter(sc)); !next.IsZero() {
			out.NextTickMs = next.UnixMilli()
		}
	}
	return out
}

// ticksAfter is when a schedule's ticks go on from: its last tick
// handled, or when it was added or resumed if that is later.
func ticksAfter(sc store.StoredSchedule) time.Time {
	since := time.UnixMilli(sc.SinceMs)
	if last := time.Unix(sc.Last.Through, 0); sc.Last.Through > 0 && last.After(since) {
		return last
	}
	return since
}

// describeSchedule says in a line what a schedule does.
func describeSchedule(r store.ScheduleRecord) string {
	tz := r.TZ
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("%q in %s: %s key %s payload %s, catch-up %s", r.Cron, tz, r.Handler, r.Key, r.Payload, r.CatchUp)
}
