package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// keyOwnedBy finds a key, named prefix-N, whose partition the ring and
// the claims in Redis both give to owner, waiting while partitions move.
func keyOwnedBy(t *testing.T, cl *client.Client, owner, prefix string) string {
	t.Helper()
	var keys []string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("%s-%d", prefix, i))
	}
	var key string
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		locs, err := cl.Locate(ctx, keys...)
		cancel()
		for _, l := range locs {
			if l.Owner == owner && l.RingOwner == owner {
				key = l.Key
				return nil
			}
		}
		return fmt.Errorf("no key %s-N owned by %s (last locate error: %v)", prefix, owner, err)
	})
	return key
}

// waitLog waits until worker id's log matches re.
func (c *cluster) waitLog(id string, re *regexp.Regexp, what string) {
	c.t.Helper()
	testenv.Eventually(c.t, 30*time.Second, func() error {
		if b, _ := os.ReadFile(filepath.Join(c.dir, id+".log")); !re.Match(b) {
			return fmt.Errorf("worker %s did not log %s", id, what)
		}
		return nil
	})
}

// waitStatus waits until `coordinator status` output satisfies ok.
func (c *cluster) waitStatus(ok func(out string) bool, what string) string {
	c.t.Helper()
	var out string
	testenv.Eventually(c.t, 30*time.Second, func() error {
		var err error
		if out, err = c.coordinator("status"); err != nil || !ok(out) {
			return fmt.Errorf("status did not show %s: %v\n%s", what, err, out)
		}
		return nil
	})
	return out
}

// TestMixedPluginSets runs two workers with different plugin sets: w1
// the donations and chaos plugins, w2 the donations plugin alone, as in a
// rolling upgrade that adds the chaos plugin's handlers. Status warns,
// naming w2 and what it lacks; submit and call refuse account.add for a
// key w2 owns, naming w2; a bucket.credit emitted to a bucket w2 owns
// waits there, without failing or spending an attempt, until the upgrade
// reaches w2; then it commits at its first attempt and the warning goes.
func TestMixedPluginSets(t *testing.T) {
	c := newCluster(t, "--partitions", "16")
	chaos := chaosPlugin(t, c)
	c.launch("w1", workerRun{args: []string{"--plugin", chaos}})
	c.launch("w2", workerRun{})
	cl := c.client()
	waitOwners(t, cl, 2)

	out := c.waitStatus(func(out string) bool { return strings.Contains(out, "WARNING") }, "a warning")
	if !strings.Contains(out, "w2 lacks account.add, bucket.credit (served elsewhere by chaos@0.1.0)") {
		t.Fatalf("status does not name what w2 lacks:\n%s", out)
	}
	t.Logf("status:\n%s", out)

	onW2 := keyOwnedBy(t, cl, "w2", "acct")
	payload := `{"amount_cents":5,"seq":1,"bucket":"b"}`
	for _, cmd := range [][]string{
		{"submit", "--handler", "account.add", "--key", onW2, "--payload", payload},
		{"call", "--handler", "account.add", "--key", onW2, "--payload", payload},
	} {
		_, err := c.coordinator(cmd...)
		// Whichever worker takes it: w1 refuses it for its owner, w2 for
		// itself, the owner.
		if err == nil || !strings.Contains(err.Error(), "workers with it: w1; workers without it: w2") {
			t.Fatalf("%s for a key of w2: %v, want refused naming w2", cmd[0], err)
		}
	}

	// A job w1 runs emits to a bucket whose partition w2 owns.
	onW1 := keyOwnedBy(t, cl, "w1", "acct")
	bucket := keyOwnedBy(t, cl, "w2", "bucket")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cl.Submit(ctx, []*workerpb.Job{{Id: "p1", Handler: "account.add", Key: onW1,
		Payload: fmt.Appendf(nil, `{"amount_cents":7,"seq":1,"bucket":%q}`, bucket)}})
	if err != nil || res[0].Error != "" {
		t.Fatalf("submit for a key of w1: %v %v", err, res)
	}
	if rs, err := cl.Results(ctx, 30*time.Second, "p1"); err != nil || rs[0].State != workerpb.JobResult_DONE {
		t.Fatalf("p1: %v %v", rs, err)
	}
	child := store.EmittedID("p1", 0)
	c.waitLog("w2", regexp.MustCompile(`does not serve the handler.*handler=bucket\.credit.*first_job=`+regexp.QuoteMeta(child)), "the emitted job waiting")
	if rs, err := cl.Results(ctx, 0, child); err != nil || rs[0].State != workerpb.JobResult_QUEUED {
		t.Fatalf("the emitted job while w2 lacks its handler: %v %v, want queued", rs, err)
	}

	// The upgrade reaches w2.
	c.signal("w2", syscall.SIGTERM)
	c.waitMembers(func(ids []string) bool { return !slices.Contains(ids, "w2") }, "w2 gone")
	c.launch("w2", workerRun{args: []string{"--plugin", chaos}})
	rs, err := cl.Results(ctx, time.Minute, child)
	if err != nil || rs[0].State != workerpb.JobResult_DONE || rs[0].Attempts != 1 {
		t.Fatalf("the emitted job after the upgrade: %v %v, want done at its first attempt", rs, err)
	}
	st, err := cl.State(ctx, "bucket", bucket)
	if err != nil || !st[0].Found {
		t.Fatalf("bucket state: %v %v", st, err)
	}
	var b struct {
		TotalCents int64 `json:"total_cents"`
	}
	if err := json.Unmarshal(st[0].State, &b); err != nil || b.TotalCents != 7 {
		t.Fatalf("bucket %s = %s, want total_cents 7", bucket, st[0].State)
	}
	if dead, _, err := cl.DeadLetters(ctx, 10, ""); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters %v %v, want none", dead, err)
	}
	c.waitStatus(func(out string) bool { return !strings.Contains(out, "WARNING") }, "no warning once every worker serves the same handlers")
}

// TestEmitToUnknownHandlerFailsTheAttempt: a handler that emits to a
// handler no worker serves (a typo) fails its attempt: nothing of it is
// committed, it is retried, and it is dead-lettered with the reason,
// which names the handler and the emitting job.
func TestEmitToUnknownHandlerFailsTheAttempt(t *testing.T) {
	c := newCluster(t, "--partitions", "16")
	c.startWith("w1", chaosPlugin(t, c))
	if _, err := c.coordinator("submit", "--handler", "account.add", "--key", "acct-typo", "--id", "typo-1",
		"--payload", `{"amount_cents":3,"seq":1,"bucket":"typo-bucket","poison":"typo"}`); err != nil {
		t.Fatal(err)
	}
	_, err := c.coordinator("result", "--wait", "60s", "typo-1")
	if err == nil || !strings.Contains(err.Error(), "dead-lettered after 4 attempts") ||
		!strings.Contains(err.Error(), `"bucket.credt"`) || !strings.Contains(err.Error(), "job typo-1") {
		t.Fatalf("result: %v, want dead-lettered naming bucket.credt and typo-1", err)
	}
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, e := range []struct{ entity, key string }{{"account", "acct-typo"}, {"bucket", "typo-bucket"}} {
		st, err := cl.State(ctx, e.entity, e.key)
		if err != nil || st[0].Found {
			t.Fatalf("%s %s: %v %v, want no state: nothing of the failed attempts commits", e.entity, e.key, st, err)
		}
	}
	out, err := c.coordinator("dlq", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "DEAD AT") ||
		!regexp.MustCompile(`typo-1\s+account\.add\s+acct-typo\s+4\s+attempt 4: job typo-1 emitted a job for handler "bucket\.credt"`).MatchString(lines[1]) {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
}

// TestSubmitFileReportsInFileOrder: the rejected and malformed lines of a
// file are reported in file order, though the file's jobs go out in lanes
// that answer in their own order.
func TestSubmitFileReportsInFileOrder(t *testing.T) {
	c := newCluster(t, "--partitions", "16")
	c.startWith("w1", chaosPlugin(t, c))
	var b strings.Builder
	var bad []int
	for line := 1; line <= 2000; line++ {
		switch {
		case line%97 == 0:
			b.WriteString(`{"id":"x","handler":` + "\n")
			bad = append(bad, line)
		case line%89 == 0:
			fmt.Fprintf(&b, `{"handler":"acount.add","key":"acct-%d","payload":{"amount_cents":1,"seq":1,"bucket":"b"}}`+"\n", line)
			bad = append(bad, line)
		default:
			fmt.Fprintf(&b, `{"handler":"account.add","key":"acct-%d","payload":{"amount_cents":1,"seq":%d,"bucket":"b"}}`+"\n", line%50, line)
		}
	}
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := c.coordinator("submit", "--quiet", "--file", file)
	if err == nil {
		t.Fatal("a file with bad lines was submitted without an error")
	}
	var reported []int
	for _, m := range regexp.MustCompile(`line (\d+): (?:rejected|malformed)`).FindAllStringSubmatch(err.Error(), -1) {
		n, _ := strconv.Atoi(m[1])
		reported = append(reported, n)
	}
	if !slices.Equal(reported, bad) {
		t.Fatalf("reported lines %v, want %v in file order", reported, bad)
	}
}
