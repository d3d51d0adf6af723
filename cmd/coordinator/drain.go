package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/corralhq/corral/client"
)

func drainCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator drain [-o table|json] WORKER\n\nHands every partition of WORKER off to the others, as SIGTERM would, and\nleaves it claiming nothing while its API stays up; stop it afterwards.\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("drain needs exactly one WORKER id, got %d arguments", fs.NArg())
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	n, err := c.Drain(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if out.json() {
		return printJSON(stdout, map[string]any{"worker": fs.Arg(0), "released": n})
	}
	fmt.Fprintf(stdout, "%s drained: released %d partitions\n", fs.Arg(0), n)
	return nil
}
