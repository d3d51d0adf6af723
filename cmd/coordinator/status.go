package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/handlerset"
)

func statusCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator status [-o table|json]\n\nLists healthy members, the partitions each owns, the jobs waiting in them\n(WAITING: queued, delayed and retrying jobs, and emitted ones not relayed\nyet; 'coordinator jobs list' lists them), and the plugin versions each\nruns (name@version and the binary's sha256 prefix).\nA plugin whose path holds a file it does not run (a failed reload, or a\nnew file not reloaded yet) is listed below the table with the reason.\nLists the handlers paused or limited (coordinator handler). Warns when the\nworkers serve different handlers or plugin versions (from the handler set\neach publishes in its Consul service meta), and tells how many schedules\nthere are, naming the paused ones. Names the groups workers joined\n(worker --groups) with their members.\n\nFlags:")
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
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Id < st.Members[j].Id })
	if out.json() {
		return printStatusJSON(ctx, c, st, stdout)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tPARTITIONS\tWAITING\tCOMMITTED\tFENCED\tPLUGINS\tBREAKERS")
	owned := 0
	for _, m := range st.Members {
		if m.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t?\t?\t?\t?\tunreachable: %s\n", m.Id, m.Address, m.Error)
			continue
		}
		var depth int64
		for _, p := range m.Partitions {
			depth += p.Depth
		}
		owned += len(m.Partitions)
		id := m.Id
		if m.Draining {
			id += " (draining)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%v\t%s\n", id, m.Address, len(m.Partitions), depth, m.Committed, m.Fenced, pluginSummary(m), breakerSummary(m.Breakers))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "partitions: %d (%d owned), jobs waiting: %d\n", st.Partitions, owned, st.TotalDepth)
	if st.ReshardFrom > 0 {
		fmt.Fprintf(stdout, "resharding %d → %d: %d of %d partitions split (coordinator reshard follows it)\n", st.ReshardFrom, st.Partitions, st.ReshardSplit, st.ReshardFrom)
	}
	if line := scheduleSummary(ctx, c); line != "" {
		fmt.Fprintln(stdout, line)
	}
	for _, m := range st.Members {
		for _, line := range filesNotRunning(m) {
			fmt.Fprintln(stdout, line)
		}
	}
	printFlows(ctx, c, stdout)
	printEvents(st.RecentEvents, stdout)
	members, err := c.Members(ctx)
	if err != nil {
		return err
	}
	if line := groupSummary(members); line != "" {
		fmt.Fprintln(stdout, line)
	}
	if lines := handlerDifferences(members); len(lines) > 0 {
		fmt.Fprintln(stdout, "WARNING: the workers serve different handlers:")
		for _, l := range lines {
			fmt.Fprintln(stdout, "  "+l)
		}
		fmt.Fprintln(stdout, "  Submit and call refuse a job whose key's owner lacks its handler; a job that reaches such an owner waits (worker --unknown-handler-wait). Install the same plugins on every worker.")
	}
	return nil
}

// filesNotRunning says, per plugin of m whose path holds a file it does
// not run, which binary runs and why the file does not.
func filesNotRunning(m *workerpb.MemberStatus) []string {
	var out []string
	for _, p := range m.PluginInfo {
		if p.Refused == "" {
			continue
		}
		file := p.Path
		if p.RefusedSha256 != "" {
			file += " (sha256 " + shortSum(p.RefusedSha256) + ")"
		}
		out = append(out, fmt.Sprintf("%s: plugin %s runs sha256 %s, not the file at %s: %s", m.Id, p.Name, shortSum(p.Sha256), file, p.Refused))
	}
	return out
}

// handlerDifferences compares the handler sets the members publish in
// their Consul meta.
func handlerDifferences(members []discovery.Member) []string {
	sets := map[string]handlerset.Set{}
	var unknown []string
	for _, m := range members {
		s, err := handlerset.FromMeta(m.Meta)
		if err != nil {
			unknown = append(unknown, m.ID)
			continue
		}
		sets[m.ID] = s
	}
	return handlerset.Compare(sets, unknown).Lines()
}

// breakerSummary lists the peers whose breaker is not closed.
func breakerSummary(states map[string]string) string {
	var bad []string
	for peer, st := range states {
		if st != "closed" {
			bad = append(bad, peer+" "+st)
		}
	}
	if len(bad) == 0 {
		return fmt.Sprintf("%d closed", len(states))
	}
	sort.Strings(bad)
	return strings.Join(bad, ", ")
}

// pluginSummary lists a member's plugin versions (with the sha256 prefix
// of their binaries when the worker reports it), with restarts,
// degradation and files at a plugin's path that do not run.
func pluginSummary(m *workerpb.MemberStatus) string {
	out := strings.Join(m.Plugins, ",")
	var notes []string
	if m.PluginRestarts > 0 {
		notes = append(notes, fmt.Sprintf("%d restarts", m.PluginRestarts))
	}
	if m.Degraded {
		notes = append(notes, "DEGRADED")
	}
	if len(m.PluginInfo) > 0 {
		var plugs []string
		refused := 0
		for _, p := range m.PluginInfo {
			plugs = append(plugs, p.Name+"@"+p.Version+" "+shortSum(p.Sha256))
			if p.Refused != "" {
				refused++
			}
		}
		out = strings.Join(plugs, ",")
		switch {
		case refused == 1:
			notes = append(notes, "new file not running")
		case refused > 1:
			notes = append(notes, fmt.Sprintf("%d new files not running", refused))
		}
	}
	if len(notes) > 0 {
		out += " (" + strings.Join(notes, ", ") + ")"
	}
	return out
}

// printStatusJSON prints what status prints, as one JSON object.
func printStatusJSON(ctx context.Context, c *client.Client, st *workerpb.StatusResponse, stdout io.Writer) error {
	out := statusJSON{Partitions: st.Partitions, JobsWaiting: st.TotalDepth, Members: []memberJSON{},
		HandlerFlows: []flowJSON{}, PausedSchedules: []string{}, HandlerDifferences: []string{}, RecentEvents: []topicMessageJSON{}}
	for _, e := range st.RecentEvents {
		out.RecentEvents = append(out.RecentEvents, toTopicMessageJSON(e.Topic, int(e.Partition), e.Id, e.JobId, e.Message))
	}
	if st.ReshardFrom > 0 {
		out.Reshard = &reshardProgressJSON{From: st.ReshardFrom, To: st.Partitions, Split: st.ReshardSplit}
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, toMemberJSON(m))
		out.Owned += len(m.Partitions)
	}
	if scs, err := c.Schedules(ctx); err == nil {
		n := len(scs)
		out.Schedules = &n
		for _, s := range scs {
			if s.Paused {
				out.PausedSchedules = append(out.PausedSchedules, s.Name)
			}
		}
	}
	if flows, err := c.HandlerFlows(ctx); err == nil {
		for _, f := range flows {
			out.HandlerFlows = append(out.HandlerFlows, toFlowJSON(f))
		}
	}
	members, err := c.Members(ctx)
	if err != nil {
		return err
	}
	out.HandlerDifferences = append(out.HandlerDifferences, handlerDifferences(members)...)
	return printJSON(stdout, out)
}
