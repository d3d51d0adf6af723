package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/cli"
	"google.golang.org/grpc/status"
)

func callCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator [--timeout D] call --handler H --key K --payload JSON [--id ID] [-o table|json]

Runs one job synchronously on the owner of its key, in order with that key's
queued jobs, and prints its result (JSON) when it has committed. When the owner
is down or slow the call goes through the queue instead, so an accepted call is
never lost; the global --timeout is its deadline. A call to an internal
handler (only other handlers may emit to it) is refused.

A job its handler rejects (sdk.Reject, e.g. "out of stock: 3 left") prints
the reason and exits non-zero; it is finished, not retried nor
dead-lettered, and a call with the same --id gets the same answer.

With -o json it prints {id, state, result, error, attempts, served_by,
durable} whatever the outcome, and still exits non-zero unless it is done.

Flags:`)
		fs.PrintDefaults()
	}
	handler := fs.String("handler", "", "handler name, e.g. donor.donate")
	key := fs.String("key", "", "entity key")
	payload := fs.String("payload", "{}", "JSON payload")
	id := fs.String("id", "", "job id (idempotency key); generated when empty")
	verbose := fs.Bool("v", false, "also print the job id, who served it and how, on stderr")
	out := outputFlag(fs, outputTable)
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("call takes no arguments, got %q (use --key)", fs.Args())
	}
	if *handler == "" || *key == "" {
		return errors.New("call needs --handler and --key")
	}
	if !json.Valid([]byte(*payload)) {
		return fmt.Errorf("--payload is not valid JSON: %s", *payload)
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Call(ctx, &workerpb.Job{Id: *id, Handler: *handler, Key: *key, Payload: []byte(*payload)})
	if err != nil {
		if s, ok := status.FromError(err); ok {
			return errors.New(s.Message())
		}
		return err
	}
	r := resp.Result
	if *verbose {
		how := "directly"
		if resp.Durable {
			how = "through the queue (owner unreachable)"
		}
		fmt.Fprintf(stderr, "job %s %s, served %s %s\n", resp.Id, client.StateName(r.State), how, resp.ServedBy)
	}
	if out.json() {
		j := toResultJSON(r)
		j.ID, j.ServedBy, j.Durable = resp.Id, resp.ServedBy, &resp.Durable
		if err := printJSON(stdout, j); err != nil {
			return err
		}
		if r.State != workerpb.JobResult_DONE {
			return fmt.Errorf("job %s is %s", resp.Id, client.StateName(r.State))
		}
		return nil
	}
	switch r.State {
	case workerpb.JobResult_DEAD:
		return fmt.Errorf("job %s was dead-lettered after %s: %s", resp.Id, cli.Attempts(r.Attempts), r.Error)
	case workerpb.JobResult_REJECTED:
		return rejected(resp.Id, r.Error)
	case workerpb.JobResult_CANCELLED:
		return cancelled(resp.Id, r.Error)
	}
	if len(r.Result) == 0 {
		fmt.Fprintln(stdout, "null")
		return nil
	}
	fmt.Fprintln(stdout, string(r.Result))
	return nil
}
