package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// clusterEvent is a cluster event as the workers record it (see
// store.ClusterEvent).
type clusterEvent struct {
	Kind      string `json:"kind"`
	Member    string `json:"member"`
	Partition *int   `json:"partition"`
	From      string `json:"from"`
	To        string `json:"to"`
	Epoch     int64  `json:"epoch"`
	Plugin    string `json:"plugin"`
	Detail    string `json:"detail"`
	By        string `json:"by"`
}

// printEvents prints the cluster's last events under the status table.
func printEvents(evs []*workerpb.TopicMessage, out io.Writer) {
	if len(evs) == 0 {
		return
	}
	fmt.Fprintln(out, "recent cluster events (coordinator watch --cluster follows them):")
	for _, e := range evs {
		fmt.Fprintln(out, "  "+eventLine(e.Id, e.Message))
	}
}

// eventLine is one cluster event in words, after the time it was
// recorded (from its stream id).
func eventLine(id string, msg []byte) string {
	at := ""
	if ms, err := strconv.ParseInt(strings.SplitN(id, "-", 2)[0], 10, 64); err == nil {
		at = time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000") + " "
	}
	var e clusterEvent
	if err := json.Unmarshal(msg, &e); err != nil {
		return at + string(msg)
	}
	owner := func(s string) string {
		if s == "" {
			return "(released)"
		}
		return s
	}
	switch {
	case e.Kind == "member.joined" || e.Kind == "member.left":
		return fmt.Sprintf("%s%s %s", at, e.Kind, e.Member)
	case e.Kind == "partition.moved" && e.Partition != nil:
		return fmt.Sprintf("%spartition.moved %d from %s to %s, epoch %d", at, *e.Partition, owner(e.From), e.To, e.Epoch)
	case e.Kind == "partition.released" && e.Partition != nil:
		return fmt.Sprintf("%spartition.released %d by %s", at, *e.Partition, e.From)
	case strings.HasPrefix(e.Kind, "breaker."):
		return fmt.Sprintf("%s%s on %s for peer %s", at, e.Kind, e.Member, e.To)
	case e.Kind == "plugin.restarted":
		return fmt.Sprintf("%splugin.restarted %s@%s on %s", at, e.Plugin, e.Detail, e.Member)
	case e.Kind == "plugin.reloaded":
		return fmt.Sprintf("%splugin.reloaded %s %s -> %s on %s", at, e.Plugin, e.From, e.To, e.Member)
	}
	return at + string(msg)
}
