package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

func broadcastCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("broadcast", flag.ContinueOnError)
	group := fs.String("group", "", "the group whose members run it (worker --groups); default: every worker")
	handler := fs.String("handler", "", "the broadcast handler to run (sdk.Broadcast) (required)")
	payload := fs.String("payload", "{}", "JSON payload")
	id := fs.String("id", "", "the broadcast's id: a member runs an id once, however often it is sent (default: a new one)")
	timeout := fs.Duration("member-timeout", 10*time.Second, "how long to wait for each member; one that does not answer is reported unreachable")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: coordinator broadcast [--group G] --handler H [--payload JSON] [--id ID] [--member-timeout D] [-o table|json]

Runs a broadcast handler once on every live worker of group G (every live
worker without --group), for cache invalidation, configuration reload or
warm-up. The members are those Consul lists healthy when the broadcast
starts: a worker that joins later does not get it. Each member records the
id in Redis and runs it once, so sending the same id again runs it nowhere
again (a run that failed may run again). A member that does not answer
within --member-timeout (killed, cut off, slow) is reported, not waited
for. The command prints one line per member and fails when any did not
run it.

Flags:`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("broadcast takes no arguments, got %q", fs.Args())
	}
	if *handler == "" {
		fs.Usage()
		return errors.New("broadcast needs --handler")
	}
	if *timeout <= 0 {
		return fmt.Errorf("--member-timeout must be positive, got %v", *timeout)
	}
	g.timeout = max(g.timeout, *timeout+10*time.Second)
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.Broadcast(ctx, *group, *handler, []byte(*payload), *id, *timeout)
	if err != nil {
		return grpcMessage(err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if !out.json() {
		fmt.Fprintln(tw, "MEMBER\tOUTCOME\tTOOK\tRESULT OR ERROR")
	}
	bad := 0
	js := broadcastJSON{ID: resp.Id, Members: []broadcastMemberJSON{}}
	for _, m := range resp.Members {
		text := string(m.Result)
		if m.Error != "" {
			text = m.Error
		}
		switch m.Outcome {
		case workerpb.BroadcastMemberResult_RAN, workerpb.BroadcastMemberResult_ALREADY:
		default:
			bad++
		}
		mj := broadcastMemberJSON{Member: m.Member, Outcome: outcomeName(m.Outcome), TookMs: m.TookMs, Error: m.Error}
		if len(m.Result) > 0 {
			mj.Result = rawJSON(m.Result)
		}
		js.Members = append(js.Members, mj)
		if !out.json() {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", m.Member, outcomeName(m.Outcome), time.Duration(m.TookMs)*time.Millisecond, text)
		}
	}
	if out.json() {
		if err := printJSON(stdout, js); err != nil {
			return err
		}
	}
	tw.Flush()
	fmt.Fprintf(stderr, "broadcast %s: %d members, %d did not run it\n", resp.Id, len(resp.Members), bad)
	if bad > 0 {
		return fmt.Errorf("broadcast %s did not run on %d of %d members; send it again with --id %s to run it where it did not", resp.Id, bad, len(resp.Members), resp.Id)
	}
	return nil
}

func outcomeName(o workerpb.BroadcastMemberResult_Outcome) string {
	switch o {
	case workerpb.BroadcastMemberResult_RAN:
		return "ran"
	case workerpb.BroadcastMemberResult_ALREADY:
		return "already"
	case workerpb.BroadcastMemberResult_FAILED:
		return "failed"
	case workerpb.BroadcastMemberResult_UNREACHABLE:
		return "unreachable"
	}
	return o.String()
}
