package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		expr, tz string
		after    string
		next     string
	}{
		{"*/5 * * * *", "", "2026-03-01T10:02:30Z", "2026-03-01T10:05:00Z"},
		{"30 * * * * *", "", "2026-03-01T10:02:30Z", "2026-03-01T10:03:30Z"}, // seconds first
		{"@hourly", "", "2026-03-01T10:02:30Z", "2026-03-01T11:00:00Z"},
		{"@every 1s", "", "2026-03-01T10:02:30.250Z", "2026-03-01T10:02:31Z"},
		{"@every 1m30s", "", "2026-03-01T10:02:30Z", "2026-03-01T10:04:00Z"},
		// 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
		{"0 9 * * *", "Europe/Paris", "2026-03-01T10:00:00Z", "2026-03-02T08:00:00Z"},
		{"0 9 * * *", "Europe/Paris", "2026-07-01T10:00:00Z", "2026-07-02T07:00:00Z"},
		{"@daily", "America/New_York", "2026-01-01T12:00:00Z", "2026-01-02T05:00:00Z"},
	} {
		s, err := Parse(c.expr, c.tz)
		if err != nil {
			t.Errorf("%q in %q: %v", c.expr, c.tz, err)
			continue
		}
		if got := s.Next(at(c.after)).UTC(); !got.Equal(at(c.next)) {
			t.Errorf("%q in %q after %s: next %s, want %s", c.expr, c.tz, c.after, got.Format(time.RFC3339), c.next)
		}
	}
	for _, c := range []struct {
		expr, tz string
		want     error
		says     string
	}{
		{"", "", ErrInvalidCron, "empty"},
		{"* * *", "", ErrInvalidCron, "five fields"},
		{"61 * * * *", "", ErrInvalidCron, "61"},
		{"@every 500ms", "", ErrInvalidCron, "whole seconds"},
		{"@every 1.5s", "", ErrInvalidCron, "whole seconds"},
		{"@every", "", ErrInvalidCron, "one duration"},
		{"@fortnightly", "", ErrInvalidCron, "fortnightly"},
		{"TZ=Europe/Paris 0 9 * * *", "", ErrInvalidCron, "--tz"},
		{"0 0 30 2 *", "", ErrInvalidCron, "never fires"},
		{"0 9 * * *", "Mars/Olympus", ErrUnknownZone, "Mars/Olympus"},
		{"0 9 * * *", "Local", ErrUnknownZone, "IANA"},
	} {
		_, err := Parse(c.expr, c.tz)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q in %q: got %v, want %v saying %q", c.expr, c.tz, err, c.want, c.says)
		}
	}
}

func TestNamesAndTickIDs(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"nightly", "a", "report.daily_v2", "team/x:y-1"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1st", "-x", "a~b", "a b", "né", strings.Repeat("a", MaxNameBytes+1)} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
	tick := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	id := TickID("nightly", tick)
	if id != "s~nightly~1772359200" {
		t.Fatalf("tick id %q", id)
	}
	name, got, ok := ParseTickID(id)
	if !ok || name != "nightly" || !got.Equal(tick) {
		t.Fatalf("ParseTickID(%q) = %q %v %v", id, name, got, ok)
	}
	for _, notTick := range []string{"nightly", "s~nightly", "s~nightly~x", "s~nightly~01", "s~9~1", "x~nightly~1", "s~nightly~1~0"} {
		if _, _, ok := ParseTickID(notTick); ok {
			t.Errorf("%q parsed as a tick id", notTick)
		}
	}
	if !IsTickBase("s~nightly") || IsTickBase("s~1") || IsTickBase("nightly") {
		t.Error("IsTickBase")
	}
}

func TestParseCatchUp(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]CatchUp{"": CatchUpOne, "one": CatchUpOne, "none": CatchUpNone, "all": CatchUpAll} {
		got, err := ParseCatchUp(s)
		if err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
		if s != "" && got.String() != s {
			t.Errorf("%v prints %q", got, got.String())
		}
	}
	if _, err := ParseCatchUp("some"); !errors.Is(err, ErrInvalidCatchUp) {
		t.Errorf("some: %v", err)
	}
}
