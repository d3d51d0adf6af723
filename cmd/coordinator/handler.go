package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

const handlerUsage = `Usage: coordinator handler pause H
       coordinator handler resume H
       coordinator handler limit H [--concurrency N] [--rate R [--burst B]] [--clear]
       coordinator handler list
Each takes -o table|json (--output): json prints the handler's flow
settings (a list of them for list).

Flow control of a handler across the whole cluster, kept in Redis; every
worker applies a change within a second. Needs an admin certificate (list:
read).

  pause    H's jobs wait, parked on their keys without spending attempts,
           until resume; calls in flight finish. Nothing is lost: submits
           are still taken (up to worker --max-queue-depth per partition).
  resume   H's waiting jobs go on, in per-key order.
  limit    at most N attempts of H in flight in the cluster at once
           (--concurrency; 0 goes back to what H's plugin declares with
           sdk.Concurrency), and at most R jobs started per second
           (--rate, with bursts of up to B, default a second's worth; 0
           lifts it). --clear drops every limit set here first. A job over
           a limit waits like a paused one, and other handlers and other
           keys of its partition go on.
  list     the handlers paused or limited, with the slots they hold now.
`

func handlerCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(stderr, handlerUsage)
		if len(args) == 0 {
			return errors.New("handler needs pause, resume, limit or list")
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("handler "+sub, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(stderr, handlerUsage)
		if sub == "limit" {
			fmt.Fprintln(stderr, "\nFlags of limit:")
			fs.PrintDefaults()
		}
	}
	out := outputFlag(fs, outputTable)
	var concurrency, burst int
	var rate float64
	var clear bool
	if sub == "limit" {
		fs.IntVar(&concurrency, "concurrency", 0, "attempts of the handler in flight in the cluster at once (0: the declared one)")
		fs.Float64Var(&rate, "rate", 0, "jobs per second the cluster starts (0: no limit)")
		fs.IntVar(&burst, "burst", 0, "with --rate: jobs that may start at once after a quiet spell (0: a second's worth)")
		fs.BoolVar(&clear, "clear", false, "drop every limit set at runtime first")
	}
	// Flags may come after the handler's name too.
	var pos []string
	for {
		if done, err := parse(fs, rest, stderr); done || err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	want := 1
	if sub == "list" {
		want = 0
	}
	switch sub {
	case "pause", "resume", "limit", "list":
	default:
		fs.Usage()
		return fmt.Errorf("unknown handler command %q: pause, resume, limit or list", sub)
	}
	if len(pos) != want {
		return fmt.Errorf("handler %s needs %s, got %q", sub, map[int]string{0: "no argument", 1: "one handler name"}[want], strings.Join(pos, " "))
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	var f *workerpb.HandlerFlow
	switch sub {
	case "list":
		flows, err := c.HandlerFlows(ctx)
		if err != nil {
			return err
		}
		if out.json() {
			rows := []flowJSON{}
			for _, f := range flows {
				rows = append(rows, toFlowJSON(f))
			}
			return printJSON(stdout, rows)
		}
		if len(flows) == 0 {
			fmt.Fprintln(stdout, "no handler is paused or limited")
		}
		for _, f := range flows {
			fmt.Fprintln(stdout, describeFlow(f, time.Now()))
		}
		return nil
	case "pause":
		f, err = c.PauseHandler(ctx, pos[0])
	case "resume":
		f, err = c.ResumeHandler(ctx, pos[0])
	case "limit":
		if !set["concurrency"] && !set["rate"] && !clear {
			return errors.New("handler limit needs --concurrency N, --rate R [--burst B] or --clear")
		}
		if set["burst"] && !set["rate"] {
			return errors.New("--burst goes with --rate")
		}
		l := client.Limits{Clear: clear, Burst: burst}
		if set["concurrency"] {
			l.Concurrency = &concurrency
		}
		if set["rate"] {
			l.Rate = &rate
		}
		f, err = c.LimitHandler(ctx, pos[0], l)
	}
	if err != nil {
		return err
	}
	if out.json() {
		return printJSON(stdout, toFlowJSON(f))
	}
	fmt.Fprintln(stdout, describeFlow(f, time.Now()))
	return nil
}

// describeFlow says in one line what holds a handler back.
func describeFlow(f *workerpb.HandlerFlow, now time.Time) string {
	var parts []string
	if f.Paused {
		p := "paused"
		if f.PausedAtMs > 0 {
			since := time.UnixMilli(f.PausedAtMs)
			p += fmt.Sprintf(" since %s (%v ago)", since.Format(time.RFC3339), now.Sub(since).Round(time.Second))
		}
		parts = append(parts, p)
	}
	if f.Concurrency > 0 {
		c := fmt.Sprintf("concurrency %d", f.Concurrency)
		switch {
		case f.DeclaredConcurrency > 0 && f.DeclaredConcurrency != f.Concurrency:
			c += fmt.Sprintf(" (declared %d)", f.DeclaredConcurrency)
		case f.DeclaredConcurrency == f.Concurrency:
			c += " (declared)"
		}
		parts = append(parts, c+fmt.Sprintf(", %d in flight", f.InFlight))
	}
	if f.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate %g/s, burst %d", f.Rate, f.Burst))
	}
	if len(parts) == 0 {
		parts = append(parts, "flowing: not paused, no limit")
	}
	return f.Handler + ": " + strings.Join(parts, "; ")
}

// printFlows lists, for status, the handlers paused or limited; a cluster
// that cannot say (an older worker) prints nothing.
func printFlows(ctx context.Context, c *client.Client, w io.Writer) {
	flows, err := c.HandlerFlows(ctx)
	if err != nil || len(flows) == 0 {
		return
	}
	fmt.Fprintln(w, "handlers held back (coordinator handler list|resume|limit):")
	for _, f := range flows {
		fmt.Fprintln(w, "  "+describeFlow(f, time.Now()))
	}
}
