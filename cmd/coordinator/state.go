package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/corralhq/corral/client"
)

func stateCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("state", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator state ENTITY KEY\n\nPrints the committed state of an entity as JSON, e.g. coordinator state donor alice.")
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("state needs ENTITY and KEY, got %d arguments", fs.NArg())
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	entity, key := fs.Arg(0), fs.Arg(1)
	states, err := c.State(ctx, entity, key)
	if err != nil {
		return err
	}
	if len(states) != 1 || !states[0].Found {
		return fmt.Errorf("no state for %s %q (no job for it has committed)", entity, key)
	}
	fmt.Fprintln(stdout, string(states[0].State))
	return nil
}
