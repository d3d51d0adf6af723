package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/client"
)

// reloadCmd asks workers to relaunch their plugins from their binaries:
// the hot upgrade SIGHUP does, for workers on other machines.
func reloadCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator reload [WORKER...]\n\nRelaunches the plugins of the given workers (default: every healthy worker)\nfrom their binaries without restarting them, as SIGHUP does: batches in\nflight finish on the old version, new batches go to the new one. A worker\nwhose new plugin fails to start keeps the old one and reports why.")
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	members, err := c.Members(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, id := range fs.Args() {
		want[id] = true
	}
	all := len(want) == 0
	var failed []string
	for _, m := range members {
		if !all && !want[m.ID] {
			continue
		}
		delete(want, m.ID)
		plugins, err := c.ReloadPlugins(ctx, m.Address)
		if err != nil {
			fmt.Fprintf(stdout, "%s\tFAILED: %s\n", m.ID, status.Convert(err).Message())
			failed = append(failed, m.ID)
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\n", m.ID, strings.Join(plugins, " "))
	}
	for id := range want {
		fmt.Fprintf(stdout, "%s\tFAILED: %v\n", id, client.ErrUnknownWorker)
		failed = append(failed, id)
	}
	if len(failed) > 0 {
		return fmt.Errorf("reload failed on %s", strings.Join(failed, ", "))
	}
	return nil
}
