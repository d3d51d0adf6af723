package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// keysOf marshals v and returns its top-level field names, sorted.
func keysOf(t *testing.T, v any) []string {
	t.Helper()
	var b bytes.Buffer
	if err := printJSON(&b, v); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b.String())
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func wantKeys(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s fields:\n got %v\nwant %v", what, got, want)
	}
}

// The JSON field names are an interface scripts rely on: this test pins them.
func TestJSONShapes(t *testing.T) {
	m := &workerpb.MemberStatus{Id: "w1", Address: "127.0.0.1:1", Partitions: []*workerpb.PartitionStatus{{Partition: 3, Epoch: 7, Depth: 2}, {Partition: 1, Epoch: 1, Depth: 1}},
		Plugins: []string{"donations@0.1.0"}, Committed: 5, Breakers: map[string]string{"w2": "closed"}}
	mj := toMemberJSON(m)
	wantKeys(t, "member", keysOf(t, mj), "id", "address", "version", "draining", "degraded", "partitions", "jobs_waiting",
		"committed", "fenced", "retried", "dead_lettered", "plugin_restarts", "lease_remaining_ms", "plugins", "breakers")
	if mj.JobsWaiting != 3 || mj.Partitions[0].Partition != 1 || mj.Plugins[0] != (pluginJSON{Name: "donations", Version: "0.1.0"}) {
		t.Errorf("member: %+v", mj)
	}
	st := statusJSON{Members: []memberJSON{mj}, HandlerFlows: []flowJSON{}, PausedSchedules: []string{}, HandlerDifferences: []string{}}
	wantKeys(t, "status", keysOf(t, st), "partitions", "owned", "jobs_waiting", "members", "handler_flows", "paused_schedules", "handler_differences", "recent_events")
	wantKeys(t, "partition", keysOf(t, mj.Partitions[0]), "partition", "epoch", "depth")

	wantKeys(t, "location", keysOf(t, toLocationJSON(&workerpb.Location{Key: "alice"})), "key", "partition", "owner", "owner_address", "epoch", "ring_owner")

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	j := toJobJSON(&workerpb.JobInfo{Id: "j1", State: workerpb.JobResult_DONE, Handler: "donor.donate", Key: "alice", Partition: 4,
		Attempts: 1, Result: []byte(`{"total":5}`), Payload: []byte(`{"amount":5}`), SubmittedAtMs: at, FinishedAtMs: at + 1})
	wantKeys(t, "done job", keysOf(t, j), "id", "state", "handler", "key", "partition", "attempts", "result", "payload", "submitted_at", "finished_at")
	b, _ := json.Marshal(j)
	if !strings.Contains(string(b), `"result":{"total":5}`) || !strings.Contains(string(b), `"state":"done"`) ||
		!strings.Contains(string(b), `"submitted_at":"2026-01-02T03:04:05Z"`) {
		t.Errorf("job JSON: %s", b)
	}
	q := toJobJSON(&workerpb.JobInfo{Id: "j2", State: workerpb.JobResult_RETRYING, Partition: -1, NextRunMs: at, Errors: []string{"boom"}, CancelRequested: true})
	wantKeys(t, "retrying job", keysOf(t, q), "id", "state", "handler", "key", "attempts", "next_run", "errors", "cancel_requested")

	d := toDeadLetterJSON(&workerpb.DeadLetter{Id: "d1", Payload: []byte(`{}`), DeadAtMs: at})
	wantKeys(t, "dead letter", keysOf(t, d), "id", "handler", "key", "payload", "attempts", "errors", "dead_at", "partition")

	r := toResultJSON(&workerpb.JobResult{Id: "j1", State: workerpb.JobResult_DEAD, Error: "boom", Attempts: 3})
	wantKeys(t, "result", keysOf(t, r), "id", "state", "result", "error", "attempts")
	if string(r.Result) != "null" {
		t.Errorf("a dead job's result is %s, want null", r.Result)
	}
	f := toFlowJSON(&workerpb.HandlerFlow{Handler: "donor.donate", Paused: true, PausedAtMs: at})
	wantKeys(t, "flow", keysOf(t, f), "handler", "paused", "paused_at", "concurrency", "declared_concurrency", "rate", "burst", "in_flight")
	wantKeys(t, "submitted", keysOf(t, submittedJSON{ID: "j"}), "id", "partition", "duplicate")
	wantKeys(t, "cancel", keysOf(t, cancelJSON{}), "id", "state", "cancelled", "pending", "message")
	wantKeys(t, "state", keysOf(t, stateJSON{State: json.RawMessage(`{}`)}), "entity", "key", "state")
	rl := toReloadJSON("w1", &workerpb.ReloadPluginsResponse{Plugins: []string{"donations@0.2.0"},
		Changes: []*workerpb.PluginChange{{Name: "donations", FromVersion: "0.1.0", ToVersion: "0.2.0"}}})
	wantKeys(t, "reload", keysOf(t, rl), "worker", "plugins", "changes")
	wantKeys(t, "plugin change", keysOf(t, rl.Changes[0]), "name", "from_version", "to_version", "from_sha256", "to_sha256")
	wantKeys(t, "certificate", keysOf(t, certJSON{File: "a.pem", Type: "certificate", Name: "a", Role: "read", Hosts: []string{"h"},
		Issuer: "ca", NotAfter: "2027-01-01T00:00:00Z", State: "valid"}), "file", "type", "name", "role", "hosts", "issuer", "not_after", "state")
	wantKeys(t, "entities", keysOf(t, entitiesJSON{Entity: "donor", Keys: []string{"alice"}}), "entity", "keys", "next")
	wantKeys(t, "entity delete", keysOf(t, entityDeleteJSON{}), "entity", "key", "id", "partition")
	wantKeys(t, "broadcast", keysOf(t, broadcastJSON{Members: []broadcastMemberJSON{}}), "id", "members")
	wantKeys(t, "watch message", keysOf(t, toTopicMessageJSON("donations", 3, "1767323045000-0", "j1", []byte(`{"a":1}`))),
		"topic", "partition", "id", "job_id", "committed_at", "message")
	ev := toTopicMessageJSON("$cluster", 0, "1767323045000-1", "", []byte(`{"kind":"member.joined"}`))
	wantKeys(t, "cluster event", keysOf(t, ev), "topic", "partition", "id", "committed_at", "message")
	if b, _ := json.Marshal(ev); !strings.Contains(string(b), `"message":{"kind":"member.joined"}`) ||
		!strings.Contains(string(b), `"committed_at":"2026-01-02T03:04:05Z"`) {
		t.Errorf("watch message JSON: %s", b)
	}
	wantKeys(t, "broadcast member", keysOf(t, broadcastMemberJSON{Result: json.RawMessage(`1`), Error: "x"}), "member", "outcome", "took_ms", "result", "error")
}

// Every field name is snake_case: lower-case letters, digits and underscores.
func TestJSONNamesAreSnakeCase(t *testing.T) {
	for _, v := range []any{memberJSON{}, statusJSON{}, partitionJSON{}, pluginJSON{}, flowJSON{}, locationJSON{}, jobJSON{},
		deadLetterJSON{}, resultJSON{}, stateJSON{}, cancelJSON{}, submittedJSON{}, reloadJSON{}, pluginChangeJSON{}, certJSON{Hosts: []string{}},
		entitiesJSON{}, entityDeleteJSON{}, broadcastJSON{}, broadcastMemberJSON{}, topicMessageJSON{JobID: "j", Message: json.RawMessage(`1`)}} {
		b, _ := json.Marshal(v)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k := range m {
			if strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				t.Errorf("%T: field %q is not snake_case", v, k)
			}
		}
	}
}

func TestPrintFields(t *testing.T) {
	var b bytes.Buffer
	if err := printFields(&b, toDeadLetterJSON(&workerpb.DeadLetter{Id: "d1", Handler: "h.a", Payload: []byte(`{"a":1}`),
		Errors: []string{"attempt 1: x", "attempt 2: y"}, Attempts: 2})); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasPrefix(lines[0], "ID") || !strings.HasSuffix(lines[0], "d1") {
		t.Fatalf("first line %q:\n%s", lines[0], b.String())
	}
	if !strings.Contains(b.String(), `PAYLOAD    {"a":1}`) || !strings.Contains(b.String(), "ERRORS     attempt 1: x\n           attempt 2: y") {
		t.Fatalf("fields:\n%s", b.String())
	}
}

func TestExitCodes(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {}, {"--bogus", "status"}, {"status", "-o", "yaml"}, {"locate", "--nope", "k"}} {
		var out, errb bytes.Buffer
		err := run(args, nil, &out, &errb)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%q: %v, exit %d; want a usage error, exit 2", args, err, exitCode(err))
		}
	}
	var out, errb bytes.Buffer
	if err := run([]string{"--help"}, nil, &out, &errb); err != nil || !strings.Contains(errb.String(), "Exit codes:") {
		t.Errorf("--help: %v\n%s", err, errb.String())
	}
}
