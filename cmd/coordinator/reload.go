package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

// reloadCmd asks workers to relaunch their plugins from their binaries:
// the hot upgrade SIGHUP does, for workers on other machines.
func reloadCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator reload [-o table|json] [WORKER...]\n\nRelaunches the plugins of the given workers (default: every healthy worker)\nfrom their binaries without restarting them, as SIGHUP does: batches in\nflight finish on the old version, new batches go to the new one. Prints\neach worker's old and new plugin versions. A worker whose new plugin fails\nto start keeps the old one and reports why (with the plugin's exit status\nand last stderr lines); crashes then relaunch the old one too.\n\nFlags:")
		fs.PrintDefaults()
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
	rows := []reloadJSON{}
	for _, m := range members {
		if !all && !want[m.ID] {
			continue
		}
		delete(want, m.ID)
		resp, err := c.ReloadPluginsReport(ctx, m.Address)
		if err != nil {
			rows = append(rows, reloadJSON{Worker: m.ID, Error: status.Convert(err).Message(), Plugins: []string{}, Changes: []pluginChangeJSON{}})
			if !out.json() {
				fmt.Fprintf(stdout, "%s\tFAILED: %s\n", m.ID, status.Convert(err).Message())
			}
			failed = append(failed, m.ID)
			continue
		}
		rows = append(rows, toReloadJSON(m.ID, resp))
		if !out.json() {
			fmt.Fprintf(stdout, "%s\t%s\n", m.ID, reloadSummary(resp))
		}
	}
	for id := range want {
		rows = append(rows, reloadJSON{Worker: id, Error: client.ErrUnknownWorker.Error(), Plugins: []string{}, Changes: []pluginChangeJSON{}})
		if !out.json() {
			fmt.Fprintf(stdout, "%s\tFAILED: %v\n", id, client.ErrUnknownWorker)
		}
		failed = append(failed, id)
	}
	if out.json() {
		if err := printJSON(stdout, rows); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("reload failed on %s", strings.Join(failed, ", "))
	}
	return nil
}

// reloadSummary says what a reload did on one worker, per plugin:
// "name@old → name@new [sha256 1a2b3c4d → 5e6f7a8b]", or "name@version
// (unchanged)". A worker that does not report changes gets its plugins
// listed.
func reloadSummary(resp *workerpb.ReloadPluginsResponse) string {
	if len(resp.GetChanges()) == 0 {
		return strings.Join(resp.GetPlugins(), " ")
	}
	var out []string
	for _, c := range resp.GetChanges() {
		from, to := c.GetName()+"@"+c.GetFromVersion(), c.GetName()+"@"+c.GetToVersion()
		switch {
		case c.GetFromSha256() == c.GetToSha256() && from == to:
			out = append(out, to+" (unchanged)")
		case c.GetFromSha256() == c.GetToSha256():
			out = append(out, from+" → "+to)
		default:
			out = append(out, fmt.Sprintf("%s → %s [sha256 %s → %s]", from, to, shortSum(c.GetFromSha256()), shortSum(c.GetToSha256())))
		}
	}
	return strings.Join(out, ", ")
}

// shortSum is the first 8 hex digits of a SHA-256, as status prints them.
func shortSum(hex string) string {
	if hex == "" {
		return "?"
	}
	return hex[:min(8, len(hex))]
}
