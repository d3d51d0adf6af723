package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestCLIOutputJSON runs the coordinator's -o json against a real worker:
// each command prints one JSON document with the documented fields (jq
// reads status's, when it is installed), and a job that is not done still
// exits 1 after printing its JSON.
func TestCLIOutputJSON(t *testing.T) {
	c := newCluster(t, "--partitions", "8")
	c.startWith("w1", chaosPlugin(t, c))
	decode := func(out string, err error, v any, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%s printed no JSON: %v\n%s", what, err, out)
		}
	}
	var sub struct {
		ID        string `json:"id"`
		Partition int    `json:"partition"`
		Duplicate bool   `json:"duplicate"`
		Result    *struct {
			State  string          `json:"state"`
			Result json.RawMessage `json:"result"`
		} `json:"result"`
	}
	out, err := c.coordinator("submit", "-o", "json", "--wait", "--handler", "account.add", "--key", "json-a", "--id", "json-1",
		"--payload", `{"amount_cents":3,"seq":1,"bucket":"b"}`)
	decode(out, err, &sub, "submit -o json --wait")
	if sub.ID != "json-1" || sub.Duplicate || sub.Result == nil || sub.Result.State != "done" {
		t.Fatalf("submit: %s", out)
	}

	var st struct {
		Partitions int `json:"partitions"`
		Owned      int `json:"owned"`
		Members    []struct {
			ID         string `json:"id"`
			Committed  int64  `json:"committed"`
			Partitions []struct {
				Partition int   `json:"partition"`
				Epoch     int64 `json:"epoch"`
			} `json:"partitions"`
		} `json:"members"`
	}
	out, err = c.coordinator("status", "-o", "json")
	decode(out, err, &st, "status -o json")
	if st.Partitions != 8 || st.Owned != 8 || len(st.Members) != 1 || st.Members[0].ID != "w1" || len(st.Members[0].Partitions) != 8 || st.Members[0].Committed < 1 {
		t.Fatalf("status: %s", out)
	}
	if jq, err := exec.LookPath("jq"); err == nil {
		cmd := exec.Command(jq, "-e", ".members[0].id")
		cmd.Stdin = strings.NewReader(out)
		if id, err := cmd.Output(); err != nil || strings.TrimSpace(string(id)) != `"w1"` {
			t.Errorf("status -o json | jq -e .members[0].id: %q %v", id, err)
		}
	}

	var locs []struct {
		Key       string `json:"key"`
		Partition int    `json:"partition"`
		Owner     string `json:"owner"`
	}
	out, err = c.coordinator("locate", "-o", "json", "json-a", "json-b")
	decode(out, err, &locs, "locate -o json")
	if len(locs) != 2 || locs[0].Key != "json-a" || locs[0].Owner != "w1" {
		t.Fatalf("locate: %s", out)
	}

	var list struct {
		Jobs []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"jobs"`
		Next string `json:"next"`
	}
	out, err = c.coordinator("jobs", "list", "--state", "done", "--key", "json-a", "-o", "json")
	decode(out, err, &list, "jobs list -o json")
	if len(list.Jobs) != 1 || list.Jobs[0].ID != "json-1" || list.Jobs[0].State != "done" {
		t.Fatalf("jobs list: %s", out)
	}
	if out, err := c.coordinator("jobs", "show", "-o", "table", "json-1"); err != nil || !strings.Contains(out, "STATE") || !strings.Contains(out, "done") {
		t.Errorf("jobs show -o table: %q %v", out, err)
	}

	// A job that dead-letters: result prints its JSON and exits 1.
	out, err = c.coordinator("submit", "-o", "json", "--wait", "--handler", "account.add", "--key", "json-bad", "--id", "json-bad-1",
		"--payload", `{"amount_cents":1,"seq":1,"bucket":"b","poison":"reject"}`)
	if err == nil || !strings.Contains(out, `"state": "dead"`) || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("submit of a poison job: %q %v", out, err)
	}
	var dead struct {
		DeadLetters []struct {
			ID     string   `json:"id"`
			Errors []string `json:"errors"`
		} `json:"dead_letters"`
		More bool `json:"more"`
	}
	out, err = c.coordinator("dlq", "list", "-o", "json")
	decode(out, err, &dead, "dlq list -o json")
	if len(dead.DeadLetters) != 1 || dead.DeadLetters[0].ID != "json-bad-1" || len(dead.DeadLetters[0].Errors) == 0 {
		t.Fatalf("dlq list: %s", out)
	}
	// A wrong command line exits 2.
	_, err = c.coordinator("status", "-o", "yaml")
	if err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("status -o yaml: %v, want exit status 2", err)
	}
}
