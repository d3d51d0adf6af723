package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

const dlqUsage = `Usage: coordinator dlq list [--limit N] [-o table|json]   (oldest first)
       coordinator dlq show [-o json|table] ID
       coordinator dlq replay [-o table|json] ID... | --all
       coordinator dlq purge [-o table|json] ID... | --all

Dead letters are jobs that failed for good or spent their attempts; each
keeps its error history. replay submits them again with fresh attempts.
A job its handler rejected (sdk.Reject: a business "no") is finished, not
dead-lettered: 'coordinator result ID' shows its reason.`

func dlqCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, dlqUsage)
		if len(args) == 0 {
			return errors.New("dlq needs list, show, replay or purge")
		}
		return nil
	}
	sub := args[0]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(stderr, dlqUsage) }
	limit := fs.Int("limit", 100, "with list: dead letters to print")
	all := fs.Bool("all", false, "with replay or purge: every dead letter")
	def := outputTable
	if sub == "show" {
		def = outputJSON
	}
	out := outputFlag(fs, def)
	if done, err := parse(fs, args[1:], stderr); done || err != nil {
		return err
	}
	ids := fs.Args()
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "list":
		var all []*workerpb.DeadLetter
		after := ""
		for len(all) < *limit {
			dead, next, err := c.DeadLetters(ctx, min(*limit-len(all), 500), after)
			if err != nil {
				return err
			}
			all = append(all, dead...)
			after = next
			if next == "" {
				break
			}
		}
		if out.json() {
			rows := []deadLetterJSON{}
			for _, d := range all {
				rows = append(rows, toDeadLetterJSON(d))
			}
			return printJSON(stdout, map[string]any{"dead_letters": rows, "more": after != ""})
		}
		if len(all) == 0 {
			fmt.Fprintln(stderr, "no dead letters")
			return nil
		}
		printDeadLetters(stdout, all)
		if after != "" {
			fmt.Fprintf(stderr, "(the oldest %d; there are more: --limit N lists more)\n", len(all))
		}
		return nil
	case "show":
		if len(ids) != 1 {
			return fmt.Errorf("dlq show needs one ID, got %d", len(ids))
		}
		dead, _, err := c.DeadLetters(ctx, 0, "", ids...)
		if err != nil {
			return err
		}
		if len(dead) == 0 {
			return fmt.Errorf("no dead letter %s", ids[0])
		}
		if out.json() {
			return printJSON(stdout, toDeadLetterJSON(dead[0]))
		}
		return printFields(stdout, toDeadLetterJSON(dead[0]))
	case "replay", "purge":
		if *all == (len(ids) > 0) {
			return fmt.Errorf("dlq %s needs IDs or --all", sub)
		}
		f := c.ReplayDeadLetters
		if sub == "purge" {
			f = c.PurgeDeadLetters
		}
		n, err := f(ctx, *all, ids...)
		if err != nil {
			return err
		}
		verb := map[string]string{"replay": "replayed", "purge": "purged"}[sub]
		if out.json() {
			if err := printJSON(stdout, map[string]int64{verb: int64(n)}); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "%s %d\n", verb, n)
		}
		if !*all && int(n) < len(ids) {
			return fmt.Errorf("%d of %d ids were not in the dead-letter store", len(ids)-int(n), len(ids))
		}
		return nil
	}
	fmt.Fprintln(stderr, dlqUsage)
	return fmt.Errorf("unknown dlq command %q", sub)
}

// printDeadLetters prints dead letters as a table, in the order given
// (the store lists them oldest first), each with its last error.
func printDeadLetters(w io.Writer, dead []*workerpb.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEAD AT\tID\tHANDLER\tKEY\tATTEMPTS\tLAST ERROR")
	for _, d := range dead {
		last := ""
		if len(d.Errors) > 0 {
			last = d.Errors[len(d.Errors)-1]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", time.UnixMilli(d.DeadAtMs).UTC().Format(time.RFC3339),
			d.Id, d.Handler, d.Key, d.Attempts, strings.ReplaceAll(last, "\n", " "))
	}
	tw.Flush()
}
