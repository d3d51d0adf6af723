package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/corralhq/corral/client"
	"google.golang.org/grpc/status"
)

func stateCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("state", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator state [-o table|json] ENTITY KEY

Prints the committed state of an entity as JSON, e.g. coordinator state donor alice.
ENTITY is the entity type a handler reads and writes: the part of its name
before the first dot (donor for donor.donate), unless the handler declares
another (sdk.Entity). An entity type no handler declares is refused, and the
error lists the ones the cluster knows. With -o json the state comes
wrapped: {"entity": ..., "key": ..., "state": ...}.

Flags:`)
		fs.PrintDefaults()
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
		if s, ok := status.FromError(err); ok {
			return errors.New(s.Message())
		}
		return err
	}
	if len(states) != 1 || !states[0].Found {
		return fmt.Errorf("no state for %s %q (no job for it has committed)", entity, key)
	}
	if out.json() {
		st := json.RawMessage(states[0].State)
		if !json.Valid(st) {
			st, _ = json.Marshal(string(states[0].State))
		}
		return printJSON(stdout, stateJSON{Entity: entity, Key: key, State: st})
	}
	fmt.Fprintln(stdout, string(states[0].State))
	return nil
}
