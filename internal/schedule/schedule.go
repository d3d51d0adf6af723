// Package schedule is the pure part of schedules (cron in the cluster):
// parsing an expression in its time zone, naming schedules and the jobs
// their ticks make, and deciding which ticks to fire after an outage. It
// does no I/O; the store keeps schedules and the worker fires them.
package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // every worker and coordinator knows the same zones, whatever the machine has

	"github.com/robfig/cron/v3"
)

// Errors a schedule's definition is refused with.
var (
	ErrInvalidName    = errors.New("invalid schedule name")
	ErrInvalidCron    = errors.New("invalid cron expression")
	ErrUnknownZone    = errors.New("unknown time zone")
	ErrInvalidCatchUp = errors.New("invalid catch-up mode")
)

// MaxNameBytes bounds a schedule's name, so its ticks' job ids stay short.
const MaxNameBytes = 128

// ValidateName accepts names made of letters, digits and . _ : / - that
// start with a letter. The first letter keeps "s~NAME" from ever being an
// emitted job's id (those end in "~" and digits), so no tick's id equals
// another job's (see TickID).
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrInvalidName)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: the name is %d bytes, the limit is %d", ErrInvalidName, len(name), MaxNameBytes)
	case !isLetter(name[0]):
		return fmt.Errorf("%w: %q must start with a letter", ErrInvalidName, name)
	}
	for i, r := range name {
		if r >= 0x80 || !nameByte(byte(r)) {
			return fmt.Errorf("%w: character %q at byte %d; use letters, digits and . _ : / -", ErrInvalidName, r, i)
		}
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func nameByte(c byte) bool {
	return isLetter(c) || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
}

// tickSep is the character user job ids may not hold (store.EmitSep): a
// tick's id holds it, so no user id equals one.
const tickSep = "~"

// tickPrefix starts every tick's job id.
const tickPrefix = "s" + tickSep

// TickID is the job id of schedule name's tick at t: "s~NAME~UNIX", with
// t in whole unix seconds. The same tick always gets the same id, so the
// cluster's id reservation and each partition's job records make a tick
// fired twice (a failover, a restart, a stale owner) one job.
func TickID(name string, t time.Time) string {
	return tickPrefix + name + tickSep + strconv.FormatInt(t.Unix(), 10)
}

// ParseTickID splits a tick's job id into its schedule's name and its
// tick; ok is false for any other id.
func ParseTickID(id string) (name string, tick time.Time, ok bool) {
	rest, found := strings.CutPrefix(id, tickPrefix)
	if !found {
		return "", time.Time{}, false
	}
	i := strings.LastIndex(rest, tickSep)
	if i < 0 {
		return "", time.Time{}, false
	}
	name, num := rest[:i], rest[i+1:]
	sec, err := strconv.ParseInt(num, 10, 64)
	if err != nil || sec < 0 || strconv.FormatInt(sec, 10) != num || ValidateName(name) != nil {
		return "", time.Time{}, false
	}
	return name, time.Unix(sec, 0), true
}

// IsTickBase reports whether id is "s~NAME" for a valid name: what is
// left of a tick's id, or of a job its tick emitted, once the numbers
// after the separators are taken off.
func IsTickBase(id string) bool {
	name, ok := strings.CutPrefix(id, tickPrefix)
	return ok && ValidateName(name) == nil
}

// Spec is a parsed cron expression in its time zone.
type Spec struct {
	expr  string
	zone  string
	sched cron.Schedule
}

// parser takes the standard five fields (minute hour day-of-month month
// day-of-week), six with a leading seconds field, and the descriptors
// (@hourly, @daily, @every 10s, ...).
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse reads a cron expression to be read in time zone tz (an IANA name
// such as Europe/Paris; "" is UTC). It refuses an expression that never
// fires and an @every that is not whole seconds.
func Parse(expr, tz string) (Spec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return Spec{}, fmt.Errorf("%w: the expression is empty", ErrInvalidCron)
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return Spec{}, fmt.Errorf("%w: %q: give the time zone with --tz, not in the expression", ErrInvalidCron, expr)
	}
	loc := time.UTC
	if tz != "" {
		var err error
		if loc, err = time.LoadLocation(tz); err != nil || tz == "Local" {
			return Spec{}, fmt.Errorf("%w %q: use an IANA name such as UTC, Europe/Paris or America/New_York", ErrUnknownZone, tz)
		}
	}
	s := Spec{expr: expr, zone: loc.String()}
	if f := strings.Fields(expr); f[0] == "@every" {
		if len(f) != 2 {
			return Spec{}, fmt.Errorf("%w: %q: @every takes one duration, such as @every 30s", ErrInvalidCron, expr)
		}
		d, err := time.ParseDuration(f[1])
		if err != nil || d < time.Second || d%time.Second != 0 {
			return Spec{}, fmt.Errorf("%w: %q: @every takes whole seconds, at least 1s (such as 30s or 1h30m)", ErrInvalidCron, expr)
		}
		s.sched = cron.Every(d)
		return s, nil
	}
	sched, err := parse(expr)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %q: %v (five fields: minute hour day-of-month month day-of-week, six with seconds first, or @hourly, @daily, @every 10s, ...)", ErrInvalidCron, expr, err)
	}
	if spec, ok := sched.(*cron.SpecSchedule); ok {
		spec.Location = loc
	}
	s.sched = sched
	if s.Next(time.Now()).IsZero() {
		return Spec{}, fmt.Errorf("%w: %q never fires (no such date in the next years)", ErrInvalidCron, expr)
	}
	return s, nil
}

// parse is the cron parser, which panics on a few malformed inputs.
func parse(expr string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("malformed: %v", r)
		}
	}()
	return parser.Parse(expr)
}

// Expr is the expression as parsed.
func (s Spec) Expr() string { return s.expr }

// Zone is the time zone's name ("UTC" by default).
func (s Spec) Zone() string { return s.zone }

// Next is the first tick strictly after t, in whole seconds; zero if there
// is none in the next years. A time of day that does not exist on the
// night clocks go forward is skipped, and one that occurs twice when they
// go back fires once: the second is the same wall-clock time as the tick
// before it.
func (s Spec) Next(t time.Time) time.Time {
	n := s.sched.Next(t)
	spec, ok := s.sched.(*cron.SpecSchedule)
	if !ok || n.IsZero() {
		return n
	}
	for range 2 {
		if !sameWallClock(n.In(spec.Location), t.In(spec.Location)) {
			break
		}
		n = s.sched.Next(n)
	}
	return n
}

func sameWallClock(a, b time.Time) bool {
	ya, ma, da := a.Date()
	yb, mb, db := b.Date()
	ha, mia, sa := a.Clock()
	hb, mib, sb := b.Clock()
	return ya == yb && ma == mb && da == db && ha == hb && mia == mib && sa == sb
}

// CatchUp says what a schedule does with ticks missed while no worker
// could fire them.
type CatchUp int

const (
	CatchUpOne  CatchUp = iota // fire the latest missed tick once (the default)
	CatchUpNone                // skip them; fire the next one
	CatchUpAll                 // fire every one of them, the latest MaxCatchUp at most
)

func (c CatchUp) String() string {
	switch c {
	case CatchUpNone:
		return "none"
	case CatchUpAll:
		return "all"
	}
	return "one"
}

// ParseCatchUp reads "none", "one" or "all"; "" is "one".
func ParseCatchUp(s string) (CatchUp, error) {
	switch s {
	case "", "one":
		return CatchUpOne, nil
	case "none":
		return CatchUpNone, nil
	case "all":
		return CatchUpAll, nil
	}
	return 0, fmt.Errorf("%w %q: use none, one or all", ErrInvalidCatchUp, s)
}
