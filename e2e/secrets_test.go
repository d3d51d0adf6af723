package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// TestSecretsStayOutOfLogs runs workers that hold a Redis password, a
// Consul token and TLS keys, at the default log level (one worker logging
// JSON), and sends jobs whose payloads carry a marker and fail every way a
// job can: its handler fails it for good, asks for retries until it is
// dead-lettered, panics, hangs past its deadline, emits to a handler
// nobody serves; a failing call; a dead letter replayed; payloads refused
// at submit. The workers' logs must name the failed jobs, and hold none
// of the secrets and no marker.
func TestSecretsStayOutOfLogs(t *testing.T) {
	lc := newLockedCluster(t, "--retry-backoff", "20ms", "--retry-backoff-max", "100ms")
	c := lc.cluster
	c.flags = append(c.flags, "--plugin", chaosPlugin(t, c))
	c.start("w1")
	c.launch("w2", workerRun{args: []string{"--log-format", "json"}})
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	marker := "PAYLOAD-MARKER-" + randomHex(t)
	payload := func(fields map[string]any) []byte {
		b, _ := json.Marshal(fields)
		return b
	}
	var failing []*workerpb.Job
	for _, poison := range []string{"fail", "panic", "hang", "reject", "typo"} {
		failing = append(failing, &workerpb.Job{Id: "secret-" + poison, Handler: "account.add", Key: "secret-" + poison,
			Payload: payload(map[string]any{"amount_cents": 1, "seq": 1, "bucket": "b", "poison": poison, "note": marker})})
	}
	failing = append(failing, &workerpb.Job{Id: "secret-donation", Handler: "donor.donate", Key: "secret-donor",
		Payload: payload(map[string]any{"amount_cents": -5, "campaign": marker})})
	submitWithRetry(ctx, t, cl, failing)

	// Refused at the edge: a field the handler does not take, a wrong
	// type, JSON cut short, a payload too large.
	for _, p := range [][]byte{
		payload(map[string]any{"amount_cents": 1, "campaign": "c", "note": marker}),
		payload(map[string]any{"amount_cents": marker, "campaign": "c"}),
		[]byte(`{"amount_cents": 1, "campaign": "` + marker),
		payload(map[string]any{"amount_cents": 1, "campaign": marker + strings.Repeat("x", 1<<20)}),
	} {
		res, err := cl.Submit(ctx, []*workerpb.Job{{Handler: "donor.donate", Key: "secret-edge", Payload: p}})
		if err == nil && (len(res) != 1 || res[0].Error == "") {
			t.Fatalf("a bad payload was accepted: %v", res)
		}
	}
	// A call that fails for good.
	resp, err := cl.Call(ctx, &workerpb.Job{Id: "secret-call", Handler: "donor.donate", Key: "secret-caller",
		Payload: payload(map[string]any{"amount_cents": -7, "campaign": marker})})
	if err != nil || resp.GetResult().GetState() != workerpb.JobResult_DEAD {
		t.Fatalf("failing call: %v %v", resp, err)
	}
	ids := []string{"secret-call"}
	for _, j := range failing {
		ids = append(ids, j.Id)
		waitDead(t, ctx, cl, j.Id)
	}
	if n, err := cl.ReplayDeadLetters(ctx, false, "secret-donation"); err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	waitDead(t, ctx, cl, "secret-donation")
	// The marker did reach the workers: the dead letters keep it, for
	// whoever may read them.
	dead, _, err := cl.DeadLetters(ctx, 0, "", ids...)
	if err != nil || len(dead) != len(ids) {
		t.Fatalf("dead letters: %d of %d, %v", len(dead), len(ids), err)
	}
	for _, d := range dead {
		if !bytes.Contains(d.Payload, []byte(marker)) {
			t.Fatalf("dead letter %s has payload %s, without the marker", d.Id, d.Payload)
		}
	}
	c.stopAll() // every line written

	secrets := map[string]string{
		"the worker's Redis password": lc.workerPass,
		"the Consul token":            lc.consulToken,
		"the payload marker":          marker,
	}
	// Any line of a private key's PEM body.
	keyFiles, _ := filepath.Glob(filepath.Join(c.pki.Dir, "*key*.pem"))
	if len(keyFiles) < 3 {
		t.Fatalf("found %d key files in %s, want the CA's and the workers'", len(keyFiles), c.pki.Dir)
	}
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 32 && !strings.HasPrefix(line, "-----") {
				secrets["a line of "+filepath.Base(f)] = line
			}
		}
	}
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	var all []byte
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
		for what, s := range secrets {
			if i := bytes.Index(b, []byte(s)); i >= 0 {
				start := bytes.LastIndexByte(b[:i], '\n') + 1
				end := i + bytes.IndexByte(b[i:], '\n')
				if end < i {
					end = len(b)
				}
				t.Errorf("%s has %s:\n%s", filepath.Base(f), what, b[start:end])
			}
		}
	}
	// The failures were logged, by id.
	for _, id := range ids {
		if !bytes.Contains(all, []byte(id)) {
			t.Errorf("no worker log names the failed job %s", id)
		}
	}
	if !bytes.Contains(all, []byte("job dead-lettered")) {
		t.Errorf("the logs have no dead-lettered job")
	}
	t.Logf("%d log files, %d bytes: no password, token, key or payload in them", len(logs), len(all))
}
