package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testenv"
)

// TestDedupWindowEnds runs a worker with a 2 s dedup window: a donation
// sent again within the window is a duplicate and not applied twice; once
// the window is over and the owner has swept the job's record (which has
// no time to live of its own), the same donation runs again, and the
// donor's total says each run was applied once.
func TestDedupWindowEnds(t *testing.T) {
	c := newCluster(t, "--partitions", "8", "--dedup-window", "2s", "--result-retention", "2s")
	c.start("w1")
	type submitted struct {
		Duplicate bool `json:"duplicate"`
		Result    *struct {
			State string `json:"state"`
		} `json:"result"`
	}
	submit := func() (submitted, error) {
		var s submitted
		out, err := c.coordinator("submit", "-o", "json", "--wait", "--handler", "donor.donate", "--key", "window-donor",
			"--id", "window-gift", "--payload", `{"amount_cents":250,"campaign":"window-c"}`)
		if err != nil {
			return s, fmt.Errorf("submit: %v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return s, fmt.Errorf("submit printed no JSON: %v\n%s", err, out)
		}
		return s, nil
	}
	total := func() string {
		out, err := c.coordinator("state", "donor", "window-donor")
		if err != nil {
			t.Fatalf("state: %v\n%s", err, out)
		}
		return strings.TrimSpace(out)
	}
	firstAt := time.Now()
	first, err := submit()
	if err != nil || first.Duplicate || first.Result == nil || first.Result.State != "done" {
		t.Fatalf("first submit: %+v %v", first, err)
	}
	again, err := submit()
	if err != nil || !again.Duplicate {
		t.Fatalf("the same donation within the window: %+v %v, want a duplicate", again, err)
	}
	if got := total(); !strings.Contains(got, `"total_cents":250,`) {
		t.Fatalf("donor after a donation and its duplicate: %s, want a total of 250", got)
	}
	var ranAgain time.Time
	testenv.Eventually(t, 60*time.Second, func() error {
		s, err := submit()
		if err != nil {
			return err
		}
		if s.Duplicate {
			return fmt.Errorf("the donation is still a duplicate")
		}
		if s.Result == nil || s.Result.State != "done" {
			return fmt.Errorf("the donation ran again but is %+v", s.Result)
		}
		ranAgain = time.Now()
		return nil
	})
	if got := total(); !strings.Contains(got, `"total_cents":500,`) {
		t.Fatalf("donor after the donation ran again once the window was over: %s, want a total of 500", got)
	}
	t.Logf("the donation ran again %v after it was first sent", ranAgain.Sub(firstAt).Round(time.Millisecond))
}
