package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/corralhq/corral/client"
)

const watchUsage = `Usage: coordinator watch [flags] TOPIC [TOPIC...]
       coordinator watch [flags] --entity ENTITY --key KEY

Prints the messages handlers publish to the topics (sdk Call.Publish), one
line each, as they are committed: a job's messages go out only if the job
commits, so a job retried or a worker fenced off publishes nothing twice.
Messages come in commit order per topic and partition, so in job order per
key. When the worker serving the watch fails, it goes on from another one
where it was, losing and repeating nothing. It runs until interrupted,
--count messages have come or --for has passed (--timeout does not apply).

With --cluster it prints the cluster's events in words: members joined and
left, partitions moved (with the old and new owner and the new epoch) or
released, breakers opened and closed, plugins restarted and reloaded.

With --entity and --key it prints the entity's state after each job that
changes it, in order, as each commits (its jobs publish their states only
while someone watches it).

Each line is the message's JSON, or with --verbose:
  TOPIC PARTITION MESSAGE-ID JOB-ID JSON
(an entity's states come as topic $state:ENTITY:KEY, with no job id).
With -o json each line is one JSON object (NDJSON), cluster events too:
  {"topic", "partition", "id", "job_id"?, "committed_at", "message"}

Flags:
`

func watchCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	count := fs.Int("count", 0, "stop after this many messages (0: no limit)")
	dur := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	fromMs := fs.Int64("from-ms", 0, "start with the messages committed from this Unix ms, within the topic retention (0: now)")
	verbose := fs.Bool("verbose", false, "print each message's topic, partition, id and job before it")
	entity := fs.String("entity", "", "watch this entity type's states (with --key)")
	cluster := fs.Bool("cluster", false, "watch the cluster's events: members joined and left, partitions moved, breakers opened and closed, plugins restarted and reloaded")
	key := fs.String("key", "", "the key of the entity to watch")
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprint(stderr, watchUsage)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if (*entity == "") != (*key == "") {
		return errors.New("watch: --entity and --key go together")
	}
	if fs.NArg() == 0 && *entity == "" && !*cluster {
		fs.Usage()
		return errors.New("watch needs at least one TOPIC, --entity and --key, or --cluster")
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	topics := fs.Args()
	if *cluster {
		topics = append(topics, client.ClusterTopic)
	}
	sub := &client.Subscription{Topics: topics, From: client.Cursor{FromMs: *fromMs}, Entity: *entity, Key: *key}
	return watchTopics(ctx, c, sub, *count, *verbose, out.json(), stdout, stderr)
}

// errWatchDone ends a watch that has printed its --count messages.
var errWatchDone = errors.New("watch: count reached")

// watchTopics prints the topics' messages until ctx is done or count of
// them were printed; an interrupt or --for is a normal end. With asJSON
// each message is one line of JSON (topicMessageJSON).
// It notes on stderr each worker that serves the watch.
func watchTopics(ctx context.Context, c *client.Client, sub *client.Subscription, count int, verbose, asJSON bool, stdout, stderr io.Writer) error {
	out := stdout
	n := 0
	what := strings.Join(sub.Topics, " ")
	if sub.Entity != "" {
		what = strings.TrimSpace(what + " " + sub.Entity + " " + sub.Key)
	}
	sub.Connected = func(worker string, fromMs int64) {
		fmt.Fprintf(stderr, "watching %s on worker %s, from %s\n", what, worker, time.UnixMilli(fromMs).UTC().Format(time.RFC3339Nano))
	}
	err := c.Subscribe(ctx, sub, func(m client.Message) error {
		switch {
		case asJSON:
			b, err := json.Marshal(toTopicMessageJSON(m.Topic, m.Partition, m.ID, m.JobID, m.Data))
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s\n", b)
		case m.Topic == client.ClusterTopic && !verbose:
			fmt.Fprintln(out, eventLine(m.ID, m.Data))
			return nil
		case verbose:
			job := m.JobID
			if job == "" {
				job = "-"
			}
			fmt.Fprintf(out, "%s %d %s %s %s\n", m.Topic, m.Partition, m.ID, job, m.Data)
		default:
			fmt.Fprintf(out, "%s\n", m.Data)
		}
		n++
		if count > 0 && n >= count {
			return errWatchDone
		}
		return nil
	})
	switch {
	case errors.Is(err, errWatchDone), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	}
	return err
}
