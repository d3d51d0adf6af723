package main

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
)

// The JSON shapes of --output json. Their field names are part of the
// command line's interface: add fields, do not rename them.

type statusJSON struct {
	Partitions         int32        `json:"partitions"`
	Owned              int          `json:"owned"`
	JobsWaiting        int64        `json:"jobs_waiting"`
	Members            []memberJSON `json:"members"`
	HandlerFlows       []flowJSON   `json:"handler_flows"`
	Schedules          *int         `json:"schedules,omitempty"` // absent when the workers cannot say
	PausedSchedules    []string     `json:"paused_schedules"`
	HandlerDifferences []string     `json:"handler_differences"`
	// RecentEvents are the cluster's last events (coordinator watch
	// --cluster follows them), oldest first.
	RecentEvents []topicMessageJSON `json:"recent_events"`
	// Reshard is a reshard under way; absent when none is.
	Reshard *reshardProgressJSON `json:"reshard,omitempty"`
}

// reshardProgressJSON is a reshard under way, as status shows it.
type reshardProgressJSON struct {
	From  int32 `json:"from"`
	To    int32 `json:"to"`
	Split int32 `json:"split"`
}

type memberJSON struct {
	ID               string            `json:"id"`
	Address          string            `json:"address"`
	Error            string            `json:"error,omitempty"` // set when the member could not be asked
	Version          string            `json:"version"`
	Draining         bool              `json:"draining"`
	Degraded         bool              `json:"degraded"`
	Partitions       []partitionJSON   `json:"partitions"`
	JobsWaiting      int64             `json:"jobs_waiting"`
	Committed        int64             `json:"committed"`
	Fenced           int64             `json:"fenced"`
	Retried          int64             `json:"retried"`
	DeadLettered     int64             `json:"dead_lettered"`
	PluginRestarts   int64             `json:"plugin_restarts"`
	LeaseRemainingMs int64             `json:"lease_remaining_ms"`
	Plugins          []pluginJSON      `json:"plugins"`
	Breakers         map[string]string `json:"breakers"`
}

type partitionJSON struct {
	Partition int32 `json:"partition"`
	Epoch     int64 `json:"epoch"`
	Depth     int64 `json:"depth"`
}

type pluginJSON struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	Sha256        string `json:"sha256,omitempty"`
	Path          string `json:"path,omitempty"`
	Refused       string `json:"refused,omitempty"`
	RefusedSha256 string `json:"refused_sha256,omitempty"`
}

func toMemberJSON(m *workerpb.MemberStatus) memberJSON {
	out := memberJSON{ID: m.Id, Address: m.Address, Error: m.Error, Version: m.Version, Draining: m.Draining,
		Degraded: m.Degraded, Partitions: []partitionJSON{}, Committed: m.Committed, Fenced: m.Fenced,
		Retried: m.Retried, DeadLettered: m.DeadLettered, PluginRestarts: m.PluginRestarts,
		LeaseRemainingMs: m.LeaseRemainingMs, Plugins: []pluginJSON{}, Breakers: map[string]string{}}
	for _, p := range m.Partitions {
		out.Partitions = append(out.Partitions, partitionJSON{Partition: p.Partition, Epoch: p.Epoch, Depth: p.Depth})
		out.JobsWaiting += p.Depth
	}
	sort.Slice(out.Partitions, func(i, j int) bool { return out.Partitions[i].Partition < out.Partitions[j].Partition })
	if len(m.PluginInfo) > 0 {
		for _, p := range m.PluginInfo {
			out.Plugins = append(out.Plugins, pluginJSON{Name: p.Name, Version: p.Version, Sha256: p.Sha256, Path: p.Path,
				Refused: p.Refused, RefusedSha256: p.RefusedSha256})
		}
	} else {
		for _, p := range m.Plugins { // "name@version" from workers that send no more
			name, version := p, ""
			if i := strings.LastIndex(p, "@"); i >= 0 {
				name, version = p[:i], p[i+1:]
			}
			out.Plugins = append(out.Plugins, pluginJSON{Name: name, Version: version})
		}
	}
	for peer, st := range m.Breakers {
		out.Breakers[peer] = st
	}
	return out
}

type flowJSON struct {
	Handler             string  `json:"handler"`
	Paused              bool    `json:"paused"`
	PausedAt            string  `json:"paused_at,omitempty"`
	Concurrency         int32   `json:"concurrency"` // in force; 0 = none
	DeclaredConcurrency int32   `json:"declared_concurrency"`
	Rate                float64 `json:"rate"` // jobs/s; 0 = none
	Burst               int32   `json:"burst"`
	InFlight            int64   `json:"in_flight"`
}

func toFlowJSON(f *workerpb.HandlerFlow) flowJSON {
	out := flowJSON{Handler: f.Handler, Paused: f.Paused, Concurrency: f.Concurrency,
		DeclaredConcurrency: f.DeclaredConcurrency, Rate: f.Rate, Burst: f.Burst, InFlight: f.InFlight}
	if f.PausedAtMs > 0 {
		out.PausedAt = msTime(f.PausedAtMs)
	}
	return out
}

type locationJSON struct {
	Key          string `json:"key"`
	Partition    int32  `json:"partition"`
	Owner        string `json:"owner"` // "" when free
	OwnerAddress string `json:"owner_address"`
	Epoch        int64  `json:"epoch"`
	RingOwner    string `json:"ring_owner"`
}

func toLocationJSON(l *workerpb.Location) locationJSON {
	return locationJSON{Key: l.Key, Partition: l.Partition, Owner: l.Owner, OwnerAddress: l.OwnerAddress,
		Epoch: l.Epoch, RingOwner: l.RingOwner}
}

// jobJSON is a job as jobs list and jobs show print it.
type jobJSON struct {
	ID              string   `json:"id"`
	State           string   `json:"state"`
	Handler         string   `json:"handler"`
	Key             string   `json:"key"`
	Partition       *int32   `json:"partition,omitempty"`
	Attempts        int32    `json:"attempts"`
	NextRun         string   `json:"next_run,omitempty"`
	Errors          []string `json:"errors,omitempty"`
	Error           string   `json:"error,omitempty"`
	Result          any      `json:"result,omitempty"`
	Payload         any      `json:"payload,omitempty"`
	SubmittedAt     string   `json:"submitted_at,omitempty"`
	FinishedAt      string   `json:"finished_at,omitempty"`
	Note            string   `json:"note,omitempty"`
	Worker          string   `json:"worker,omitempty"`
	CancelRequested bool     `json:"cancel_requested,omitempty"`
}

func toJobJSON(j *workerpb.JobInfo) jobJSON {
	out := jobJSON{ID: j.Id, State: client.StateName(j.State), Handler: j.Handler, Key: j.Key, Attempts: j.Attempts,
		Errors: j.Errors, Error: j.Error, Note: j.Note, Worker: j.Worker, CancelRequested: j.CancelRequested}
	if j.Partition >= 0 {
		p := j.Partition
		out.Partition = &p
	}
	if j.NextRunMs > 0 {
		out.NextRun = msTime(j.NextRunMs)
	}
	if len(j.Result) > 0 {
		out.Result = rawJSON(j.Result)
	}
	if len(j.Payload) > 0 {
		out.Payload = rawJSON(j.Payload)
	}
	if j.SubmittedAtMs > 0 {
		out.SubmittedAt = msTime(j.SubmittedAtMs)
	}
	if j.FinishedAtMs > 0 {
		out.FinishedAt = msTime(j.FinishedAtMs)
	}
	return out
}

type deadLetterJSON struct {
	ID        string   `json:"id"`
	Handler   string   `json:"handler"`
	Key       string   `json:"key"`
	Payload   any      `json:"payload"`
	Attempts  int32    `json:"attempts"`
	Errors    []string `json:"errors"`
	DeadAt    string   `json:"dead_at"`
	Partition int32    `json:"partition"`
}

func toDeadLetterJSON(d *workerpb.DeadLetter) deadLetterJSON {
	out := deadLetterJSON{ID: d.Id, Handler: d.Handler, Key: d.Key, Payload: rawJSON(d.Payload), Attempts: d.Attempts,
		Errors: d.Errors, DeadAt: time.UnixMilli(d.DeadAtMs).UTC().Format(time.RFC3339Nano), Partition: d.Partition}
	if out.Errors == nil {
		out.Errors = []string{}
	}
	return out
}

// resultJSON is a job's outcome as result and call print it.
type resultJSON struct {
	ID       string          `json:"id"`
	State    string          `json:"state"`
	Result   json.RawMessage `json:"result"` // null unless done with a result
	Error    string          `json:"error,omitempty"`
	Attempts int32           `json:"attempts"`
	ServedBy string          `json:"served_by,omitempty"` // call only
	Durable  *bool           `json:"durable,omitempty"`   // call only: it went through the queue
}

func toResultJSON(r *workerpb.JobResult) resultJSON {
	out := resultJSON{ID: r.Id, State: client.StateName(r.State), Result: json.RawMessage("null"), Error: r.Error, Attempts: r.Attempts}
	if len(r.Result) > 0 {
		if json.Valid(r.Result) {
			out.Result = r.Result
		} else {
			b, _ := json.Marshal(string(r.Result))
			out.Result = b
		}
	}
	return out
}

// stateJSON is what state prints with -o json.
type stateJSON struct {
	Entity string          `json:"entity"`
	Key    string          `json:"key"`
	State  json.RawMessage `json:"state"`
}

// cancelJSON is one job's line of jobs cancel.
type cancelJSON struct {
	ID        string `json:"id"`
	State     string `json:"state"`     // cancelled, or the state that kept it from being cancelled
	Cancelled bool   `json:"cancelled"` // this request cancelled it
	Pending   bool   `json:"pending"`   // recorded, not applied yet
	Message   string `json:"message"`
}

// submittedJSON is what submit prints of one job with -o json.
type submittedJSON struct {
	ID        string      `json:"id"`
	Partition int32       `json:"partition"`
	Duplicate bool        `json:"duplicate"`       // already submitted, not enqueued again
	State     string      `json:"state,omitempty"` // a duplicate's state
	Result    *resultJSON `json:"result,omitempty"`
}

// reloadJSON is one worker's line of reload.
type reloadJSON struct {
	Worker  string             `json:"worker"`
	Error   string             `json:"error,omitempty"` // the reload failed
	Plugins []string           `json:"plugins"`         // name@version running after it
	Changes []pluginChangeJSON `json:"changes"`
}

type pluginChangeJSON struct {
	Name        string `json:"name"`
	FromVersion string `json:"from_version"`
	ToVersion   string `json:"to_version"`
	FromSha256  string `json:"from_sha256"`
	ToSha256    string `json:"to_sha256"`
}

func toReloadJSON(worker string, resp *workerpb.ReloadPluginsResponse) reloadJSON {
	out := reloadJSON{Worker: worker, Plugins: append([]string{}, resp.GetPlugins()...), Changes: []pluginChangeJSON{}}
	for _, c := range resp.GetChanges() {
		out.Changes = append(out.Changes, pluginChangeJSON{Name: c.GetName(), FromVersion: c.GetFromVersion(),
			ToVersion: c.GetToVersion(), FromSha256: c.GetFromSha256(), ToSha256: c.GetToSha256()})
	}
	return out
}

// certJSON is one file of certs show.
type certJSON struct {
	File     string   `json:"file"`
	Type     string   `json:"type"` // "certificate", or the PEM block's type
	Name     string   `json:"name,omitempty"`
	Role     string   `json:"role,omitempty"` // read, submit, admin, peer, or CA
	Hosts    []string `json:"hosts,omitempty"`
	Issuer   string   `json:"issuer,omitempty"`
	NotAfter string   `json:"not_after,omitempty"`
	State    string   `json:"state,omitempty"` // valid, EXPIRED, not yet valid
}

type entitiesJSON struct {
	Entity string   `json:"entity"`
	Keys   []string `json:"keys"`
	Next   string   `json:"next"` // "" when the listing is complete
}

type entityDeleteJSON struct {
	Entity    string `json:"entity"`
	Key       string `json:"key"`
	ID        string `json:"id"` // the delete's job id
	Partition int32  `json:"partition"`
}

type broadcastJSON struct {
	ID      string                `json:"id"`
	Members []broadcastMemberJSON `json:"members"`
}

type broadcastMemberJSON struct {
	Member  string `json:"member"`
	Outcome string `json:"outcome"` // ran, already, failed, unreachable
	TookMs  int64  `json:"took_ms"`
	Result  any    `json:"result,omitempty"` // the handler's result: JSON as is, other bytes as a string
	Error   string `json:"error,omitempty"`
}

// topicMessageJSON is one message as watch -o json prints it (one object
// a line), and one of status's recent cluster events.
type topicMessageJSON struct {
	Topic       string          `json:"topic"`
	Partition   int             `json:"partition"`
	ID          string          `json:"id"`
	JobID       string          `json:"job_id,omitempty"` // "" for an entity's states and cluster events
	CommittedAt string          `json:"committed_at"`     // from the id's Unix ms
	Message     json.RawMessage `json:"message"`
}

func toTopicMessageJSON(topic string, partition int, id, jobID string, msg []byte) topicMessageJSON {
	out := topicMessageJSON{Topic: topic, Partition: partition, ID: id, JobID: jobID, Message: json.RawMessage(msg)}
	if ms, err := strconv.ParseInt(strings.SplitN(id, "-", 2)[0], 10, 64); err == nil {
		out.CommittedAt = msTime(ms)
	}
	if !json.Valid(msg) {
		b, _ := json.Marshal(string(msg))
		out.Message = b
	}
	return out
}
