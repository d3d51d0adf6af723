package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"google.golang.org/grpc/status"
)

const entitiesUsage = `Usage: coordinator entities list ENTITY [--prefix P] [--limit N] [--after CURSOR]
       coordinator entities delete [--id ID] [--wait D] ENTITY KEY

Lists the keys of an entity type that have state, and deletes an entity's
state. ENTITY is an entity type, as for coordinator state.

Run "coordinator entities COMMAND --help" for a command's flags.`

func entitiesCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, entitiesUsage)
		if len(args) == 0 {
			return errors.New("entities needs list or delete")
		}
		return nil
	}
	switch args[0] {
	case "list":
		return entitiesList(ctx, g, newClient, args[1:], stdout, stderr)
	case "delete":
		return entitiesDelete(ctx, g, newClient, args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, entitiesUsage)
	return fmt.Errorf("unknown entities command %q", args[0])
}

func entitiesList(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("entities list", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "only keys starting with it")
	limit := fs.Int("limit", 1000, "keys to print (0: all of them)")
	after := fs.String("after", "", "go on from the cursor a listing printed")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator entities list ENTITY [--prefix P] [--limit N] [--after CURSOR] [-o table|json]

Prints the keys of ENTITY that have state, one per line, partition by
partition and in key order within a partition. Each partition's owner
keeps an index of its keys as it commits their states, so a listing reads
pages of it and never blocks Redis. A key whose state exists for the whole
listing is printed exactly once, however many jobs commit meanwhile; one
created or deleted during it may or may not be.

When more keys are left than --limit, the command prints a cursor on
stderr: --after CURSOR goes on from there. With -o json it prints
{"entity", "keys": [...], "next": CURSOR or ""} instead.

Flags:`)
		fs.PrintDefaults()
	}
	entity, done, err := parseOneArg(fs, args, stderr, "entities list needs ENTITY")
	if done || err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must be 0 (all) or more, got %d", *limit)
	}
	c, ctx, release, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer release()
	n, cursor := 0, *after
	listed := []string{}
	for *limit == 0 || n < *limit {
		page := 1000
		if *limit > 0 {
			page = min(*limit-n, page)
		}
		resp, err := c.ListEntities(ctx, entity, *prefix, page, cursor)
		if err != nil {
			return grpcMessage(err)
		}
		for _, k := range resp.Keys {
			if out.json() {
				listed = append(listed, k.Key)
			} else {
				fmt.Fprintln(stdout, k.Key)
			}
		}
		n += len(resp.Keys)
		cursor = resp.Next
		if cursor == "" {
			break
		}
	}
	if out.json() {
		return printJSON(stdout, entitiesJSON{Entity: entity, Keys: listed, Next: cursor})
	}
	if n == 0 && cursor == "" {
		fmt.Fprintf(stderr, "no %s has state\n", entity)
	}
	if cursor != "" {
		fmt.Fprintf(stderr, "(%d keys; more may follow: --after %s)\n", n, cursor)
	}
	return nil
}

func entitiesDelete(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("entities delete", flag.ContinueOnError)
	id := fs.String("id", "", "the delete's job id: sent again with the same id, it deletes once (default: a new one)")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the delete to commit")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator entities delete [--id ID] [--wait D] [-o table|json] ENTITY KEY

Deletes the state of ENTITY KEY. The delete is a job on the key's
partition, committed by its owner under its fencing token, after the jobs
of the key submitted before it and before those submitted after: a job
submitted after the delete returns starts from no state. It prints the
delete's job id once it committed.

Flags:`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("entities delete needs ENTITY and KEY, got %d arguments", fs.NArg())
	}
	c, ctx, release, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer release()
	resp, err := c.DeleteEntity(ctx, fs.Arg(0), fs.Arg(1), *id, *wait)
	if err != nil {
		return grpcMessage(err)
	}
	if resp.State != workerpb.JobResult_DONE {
		return fmt.Errorf("delete %s is %s after %v: it commits when the partition's owner reaches it (coordinator result %s)",
			resp.Id, client.StateName(resp.State), *wait, resp.Id)
	}
	if out.json() {
		return printJSON(stdout, entityDeleteJSON{Entity: fs.Arg(0), Key: fs.Arg(1), ID: resp.Id, Partition: resp.Partition})
	}
	fmt.Fprintf(stdout, "deleted %s %q (job %s, partition %d)\n", fs.Arg(0), fs.Arg(1), resp.Id, resp.Partition)
	return nil
}

// parseOneArg parses fs and its one positional argument, which may come
// before the flags (entities list donor --limit 5).
func parseOneArg(fs *flag.FlagSet, args []string, stderr io.Writer, missing string) (arg string, done bool, err error) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		arg, args = args[0], args[1:]
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return "", done, err
	}
	if arg == "" && fs.NArg() > 0 {
		arg = fs.Arg(0)
		if fs.NArg() > 1 {
			return "", false, fmt.Errorf("unexpected arguments %q", fs.Args()[1:])
		}
	} else if fs.NArg() > 0 {
		return "", false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if arg == "" {
		fs.Usage()
		return "", false, errors.New(missing)
	}
	return arg, false, nil
}

// grpcMessage is a worker's refusal without the gRPC wrapping.
func grpcMessage(err error) error {
	if s, ok := status.FromError(err); ok {
		return errors.New(s.Message())
	}
	return err
}
