package worker

import (
	"context"
	"strings"
	"testing"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/testenv"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestScheduleRPCs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	a := submitWorker(t, testenv.StartRedis(t).Addr).API()
	ctx := context.Background()
	add := func(s *workerpb.Schedule) (*workerpb.AddScheduleResponse, error) {
		return a.AddSchedule(ctx, &workerpb.AddScheduleRequest{Schedule: s})
	}
	good := func() *workerpb.Schedule {
		return &workerpb.Schedule{Name: "nightly", Cron: "0 2 * * *", Tz: "Europe/Paris", Handler: "donor.donate",
			Key: "alice", Payload: []byte(`{"amount_cents": 1}`), CatchUp: "all"}
	}
	resp, err := add(good())
	if err != nil || !resp.Created || resp.Schedule.NextTickMs == 0 || string(resp.Schedule.Payload) != `{"amount_cents":1}` {
		t.Fatalf("add: %v %v", resp, err)
	}
	// The same again, the payload spaced otherwise: nothing changes.
	same := good()
	same.Payload = []byte(`{ "amount_cents" : 1 }`)
	if resp, err := add(same); err != nil || resp.Created {
		t.Fatalf("the same schedule again: %v %v", resp, err)
	}
	other := good()
	other.Cron = "0 3 * * *"
	_, err = add(other)
	wantCode(t, "another definition", err, codes.AlreadyExists, "0 2 * * *", "delete it first")

	for _, c := range []struct {
		what string
		edit func(*workerpb.Schedule)
		says string
	}{
		{"name with ~", func(s *workerpb.Schedule) { s.Name = "a~b" }, "character '~'"},
		{"name with a digit first", func(s *workerpb.Schedule) { s.Name = "2nd" }, "start with a letter"},
		{"bad cron", func(s *workerpb.Schedule) { s.Cron = "0 25 * * *" }, "invalid cron expression"},
		{"unknown zone", func(s *workerpb.Schedule) { s.Tz = "Europe/Atlantis" }, "unknown time zone"},
		{"bad catch-up", func(s *workerpb.Schedule) { s.CatchUp = "some" }, "none, one or all"},
		{"unknown handler", func(s *workerpb.Schedule) { s.Handler = "donor.gift" }, "unknown handler"},
		{"empty key", func(s *workerpb.Schedule) { s.Key = "" }, "key is empty"},
		{"payload not JSON", func(s *workerpb.Schedule) { s.Payload = []byte(`{`) }, "not a JSON document"},
	} {
		s := good()
		s.Name = "other"
		c.edit(s)
		_, err := add(s)
		wantCode(t, c.what, err, codes.InvalidArgument, c.says)
	}

	list, err := a.ListSchedules(ctx, &workerpb.ListSchedulesRequest{})
	if err != nil || len(list.Schedules) != 1 || list.Schedules[0].Name != "nightly" || list.Schedules[0].CatchUp != "all" {
		t.Fatalf("list: %v %v", list, err)
	}
	paused, err := a.PauseSchedule(ctx, &workerpb.ScheduleName{Name: "nightly"})
	if err != nil || !paused.Paused || paused.NextTickMs != 0 {
		t.Fatalf("pause: %v %v", paused, err)
	}
	resumed, err := a.ResumeSchedule(ctx, &workerpb.ScheduleName{Name: "nightly"})
	if err != nil || resumed.Paused || resumed.NextTickMs == 0 {
		t.Fatalf("resume: %v %v", resumed, err)
	}
	del, err := a.DeleteSchedule(ctx, &workerpb.ScheduleName{Name: "nightly"})
	if err != nil || !del.Deleted {
		t.Fatalf("delete: %v %v", del, err)
	}
	if del, err := a.DeleteSchedule(ctx, &workerpb.ScheduleName{Name: "nightly"}); err != nil || del.Deleted {
		t.Fatalf("delete again: %v %v", del, err)
	}
	_, err = a.PauseSchedule(ctx, &workerpb.ScheduleName{Name: "nightly"})
	wantCode(t, "pause a deleted schedule", err, codes.NotFound, "no schedule")
	list, err = a.ListSchedules(ctx, &workerpb.ListSchedulesRequest{Names: []string{"nightly"}})
	if err != nil || len(list.Schedules) != 0 {
		t.Fatalf("show a deleted schedule: %v %v", list, err)
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, says ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %v", what, err, code)
		return
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: %q does not say %q", what, err, s)
		}
	}
}
