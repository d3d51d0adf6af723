package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/schedule"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const scheduleUsage = `Usage: coordinator schedule add NAME --cron EXPR [--tz ZONE] --handler H --key K --payload JSON [--catch-up none|one|all]
       coordinator schedule list [-o table|json]
       coordinator schedule show [-o json|table] NAME
       coordinator schedule pause NAME
       coordinator schedule resume NAME
       coordinator schedule delete NAME

A schedule submits a job at every tick of its cron expression, for as long
as it lives; "coordinator schedule COMMAND --help" says more of each.
Each tick's job has the id s~NAME~UNIX (the tick in unix seconds), so a
tick is one job however many times a failover or a restart fires it;
'coordinator result s~NAME~UNIX' reads its result. The owner of the
partition of NAME fires it. Adding, pausing, resuming and deleting need
an admin certificate; list and show a read one.`

const scheduleAddUsage = `Usage: coordinator schedule add NAME --cron EXPR [--tz ZONE] --handler H --key K --payload JSON [--catch-up none|one|all]

Adds schedule NAME (letters, digits and . _ : / -, starting with a letter):
at every tick of EXPR it submits the job --handler --key --payload, checked
now as 'coordinator submit' checks a job.

EXPR is five fields, minute hour day-of-month month day-of-week
("30 2 * * 1-5": 02:30 on weekdays), six with a seconds field first
("*/10 * * * * *"), or @yearly, @monthly, @weekly, @daily, @hourly or
@every D in whole seconds (@every 30s, @every 1h30m). It is read in --tz
(an IANA name such as Europe/Paris; default UTC): a time that does not
exist when clocks go forward is skipped that day, one that occurs twice
when they go back fires once.

--catch-up says what to do with ticks that no worker could fire for more
than 5s (the cluster, or Redis, was down; a failover alone misses none):
  one   fire the latest of them once, skip the others (default)
  none  skip them all; fire the next tick
  all   fire every one of them, the latest 1000 at most (older ones are
        skipped and logged)
Skipped ticks count in corral_schedule_ticks_missed_total.

Adding the same definition again changes nothing; another definition under
an existing NAME is refused: delete it first.

Flags:`

const scheduleOneUsage = `Usage: coordinator schedule %s NAME

%s`

var scheduleOneHelp = map[string]string{
	"show": `Prints schedule NAME as JSON (-o table: one field a line): its definition, where it lives, its last
tick handled and fired (with that job's id) and its next tick.`,
	"pause": `Pauses schedule NAME at once: no tick fires until it is resumed, not even
one its owner is firing at this moment.`,
	"resume": `Resumes schedule NAME: it fires from its next tick on. The ticks of the
pause are not fired, whatever its catch-up.`,
	"delete": `Deletes schedule NAME at once, with what its owner knows of it. Jobs its
ticks already fired stay. A schedule of the same name added later starts
afresh.`,
}

func scheduleCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, scheduleUsage)
		if len(args) == 0 {
			return errors.New("schedule needs add, list, show, pause, resume or delete")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "add":
		return scheduleAdd(ctx, g, newClient, args, stdout, stderr)
	case "list":
		return scheduleList(ctx, g, newClient, args, stdout, stderr)
	case "show", "pause", "resume", "delete":
		return scheduleOne(ctx, g, newClient, sub, args, stdout, stderr)
	}
	fmt.Fprintln(stderr, scheduleUsage)
	return fmt.Errorf("unknown schedule command %q", sub)
}

// parseNamed parses a subcommand's flags around its one NAME, given before
// the flags or after them. done is true when --help was asked.
func parseNamed(fs *flag.FlagSet, args []string, stderr io.Writer) (name string, done bool, err error) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return "", done, err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	switch {
	case name == "":
		fs.Usage()
		return "", false, fmt.Errorf("schedule %s needs a NAME", fs.Name())
	case len(rest) > 0:
		fs.Usage()
		return "", false, fmt.Errorf("schedule %s takes one NAME; also got %q", fs.Name(), strings.Join(rest, " "))
	}
	return name, false, nil
}

func scheduleAdd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("add", flag.ContinueOnError)
	cron := fs.String("cron", "", "cron expression: five fields, six with seconds, or @hourly, @every 30s, ...")
	tz := fs.String("tz", "", "IANA time zone the expression is read in (default UTC)")
	handler := fs.String("handler", "", "handler of the jobs")
	key := fs.String("key", "", "key of the jobs")
	payload := fs.String("payload", "", "JSON payload of every tick's job")
	catchUp := fs.String("catch-up", "one", "ticks missed in an outage: none, one or all")
	fs.Usage = func() {
		fmt.Fprintln(stderr, scheduleAddUsage)
		fs.PrintDefaults()
	}
	name, done, err := parseNamed(fs, args, stderr)
	if done || err != nil {
		return err
	}
	keySet := false
	fs.Visit(func(f *flag.Flag) { keySet = keySet || f.Name == "key" })
	if *cron == "" || *handler == "" || !keySet || *payload == "" {
		return errors.New("schedule add needs --cron, --handler, --key and --payload; see schedule add --help")
	}
	// Checked here too, so a mistake is told without a cluster.
	if err := schedule.ValidateName(name); err != nil {
		return err
	}
	if _, err := schedule.Parse(*cron, *tz); err != nil {
		return err
	}
	if _, err := schedule.ParseCatchUp(*catchUp); err != nil {
		return err
	}
	c, ctx, release, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer release()
	sc, created, err := c.AddSchedule(ctx, &workerpb.Schedule{Name: name, Cron: *cron, Tz: *tz, Handler: *handler,
		Key: *key, Payload: []byte(*payload), CatchUp: *catchUp})
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "schedule %s added: next tick %s, job id %s\n", name, tickTime(sc, sc.NextTickMs), tickJob(sc, sc.NextTickMs))
	} else {
		fmt.Fprintf(stdout, "schedule %s exists with this definition; nothing changed (next tick %s)\n", name, tickTime(sc, sc.NextTickMs))
	}
	return nil
}

func scheduleList(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator schedule list [-o table|json]\n\nLists every schedule, sorted by name: its expression and zone, its job,\nits catch-up, whether it is paused, the last tick it fired and the next.\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("schedule list takes no arguments, got %q", strings.Join(fs.Args(), " "))
	}
	c, ctx, release, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer release()
	scs, err := c.Schedules(ctx)
	if err != nil {
		return err
	}
	if out.json() {
		rows := []map[string]any{}
		for _, s := range scs {
			rows = append(rows, scheduleJSON(s))
		}
		return printJSON(stdout, rows)
	}
	if len(scs) == 0 {
		fmt.Fprintln(stderr, "no schedules")
		return nil
	}
	printSchedules(stdout, scs)
	return nil
}

// printSchedules prints schedules as a table, in the order given.
func printSchedules(w io.Writer, scs []*workerpb.Schedule) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCRON\tTZ\tHANDLER\tKEY\tCATCH-UP\tSTATE\tLAST FIRED\tNEXT TICK")
	for _, s := range scs {
		state, next := "active", tickTime(s, s.NextTickMs)
		if s.Paused {
			state, next = "paused", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Cron, zoneOf(s), s.Handler, s.Key, s.CatchUp, state,
			tickTime(s, s.LastFiredMs), next)
	}
	tw.Flush()
}

func scheduleOne(ctx context.Context, g globals, newClient func() (*client.Client, error), sub string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	var out *output
	if sub == "show" {
		out = outputFlag(fs, outputJSON)
	}
	fs.Usage = func() { fmt.Fprintf(stderr, scheduleOneUsage+"\n", sub, scheduleOneHelp[sub]) }
	name, done, err := parseNamed(fs, args, stderr)
	if done || err != nil {
		return err
	}
	c, ctx, release, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer release()
	switch sub {
	case "show":
		scs, err := c.Schedules(ctx, name)
		if err != nil {
			return err
		}
		if len(scs) == 0 {
			return fmt.Errorf("no schedule %s", name)
		}
		if out.json() {
			return printJSON(stdout, scheduleJSON(scs[0]))
		}
		return printFields(stdout, scheduleJSON(scs[0]))
	case "pause":
		if _, err := c.PauseSchedule(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schedule %s paused\n", name)
	case "resume":
		sc, err := c.ResumeSchedule(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schedule %s resumed: next tick %s\n", name, tickTime(sc, sc.NextTickMs))
	case "delete":
		ok, err := c.DeleteSchedule(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no schedule %s (deleted already?)", name)
		}
		fmt.Fprintf(stdout, "schedule %s deleted\n", name)
	}
	return nil
}

// scheduleJSON is what schedule show prints.
func scheduleJSON(s *workerpb.Schedule) map[string]any {
	out := map[string]any{
		"name": s.Name, "cron": s.Cron, "tz": zoneOf(s), "handler": s.Handler, "key": s.Key,
		"payload": json.RawMessage(s.Payload), "catch_up": s.CatchUp, "paused": s.Paused, "partition": s.Partition,
		"created": time.UnixMilli(s.CreatedMs).UTC().Format(time.RFC3339),
	}
	if s.LastTickMs > 0 {
		out["last_tick"] = tickTime(s, s.LastTickMs)
	}
	if s.LastFiredMs > 0 {
		out["last_fired"] = tickTime(s, s.LastFiredMs)
		out["last_job"] = tickJob(s, s.LastFiredMs)
	}
	if !s.Paused && s.NextTickMs > 0 {
		out["next_tick"] = tickTime(s, s.NextTickMs)
	}
	return out
}

func zoneOf(s *workerpb.Schedule) string {
	if s.Tz == "" {
		return "UTC"
	}
	return s.Tz
}

// tickTime is a tick in the schedule's zone, "-" for none.
func tickTime(s *workerpb.Schedule, ms int64) string {
	if ms <= 0 {
		return "-"
	}
	t := time.UnixMilli(ms).UTC()
	if loc, err := time.LoadLocation(zoneOf(s)); err == nil {
		t = t.In(loc)
	}
	return t.Format(time.RFC3339)
}

// tickJob is the id of the job of a schedule's tick.
func tickJob(s *workerpb.Schedule, ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return schedule.TickID(s.Name, time.UnixMilli(ms))
}

// scheduleSummary is the line coordinator status prints of the schedules:
// how many, and which are paused. "" from workers that have none to tell
// (an older version).
func scheduleSummary(ctx context.Context, c *client.Client) string {
	scs, err := c.Schedules(ctx)
	switch {
	case status.Code(err) == codes.Unimplemented:
		return ""
	case err != nil:
		return fmt.Sprintf("schedules: unknown (%v)", err)
	}
	var paused []string
	for _, s := range scs {
		if s.Paused {
			paused = append(paused, s.Name)
		}
	}
	line := fmt.Sprintf("schedules: %d", len(scs))
	if len(paused) > 0 {
		line += fmt.Sprintf(" (%d paused: %s)", len(paused), strings.Join(paused, ", "))
	}
	return line
}
