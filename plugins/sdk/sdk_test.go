package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

type addPayload struct {
	N int `json:"n"`
}

type counter struct {
	Total int `json:"total"`
}

// Magic amounts make the counter misbehave after it saved its new state,
// so the tests can check that the state is thrown away.
const (
	nRetry = 7
	nError = 8
	nPanic = 13
)

func add(c *Call) error {
	var p addPayload
	if err := c.Decode(&p); err != nil {
		return err
	}
	if p.N < 0 {
		return Failf("n must not be negative, got %d", p.N)
	}
	var s counter
	if _, err := c.Load(&s); err != nil {
		return err
	}
	s.Total += p.N
	if err := c.Save(s); err != nil {
		return err
	}
	switch p.N {
	case nRetry:
		return RetryAfter(errors.New("rate limited"), 1500*time.Millisecond)
	case nError:
		return fmt.Errorf("downstream: %w", errors.New("connection reset"))
	case nPanic:
		panic("unlucky number")
	}
	if err := c.Emit("audit.record", c.Key(), map[string]int{"n": p.N}); err != nil {
		return err
	}
	return c.SetResult(s)
}

// tWriter sends log lines to t.Log so a failing test shows them.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newTestPlugin(t testing.TB) *Plugin {
	p := New("counters", "1.2.3",
		Handler("counter.add", add, Timeout(2*time.Second), MaxAttempts(3)),
		Handler("counter.noop", func(*Call) error { return nil }),
	)
	p.log = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	return p
}

func job(id, handler, key, payload string) *pluginpb.Job {
	return &pluginpb.Job{Id: id, Handler: handler, Key: key, Payload: []byte(payload), Attempt: 1}
}

func addJob(id, key string, n int) *pluginpb.Job {
	return job(id, "counter.add", key, fmt.Sprintf(`{"n":%d}`, n))
}

func handle(t *testing.T, s pluginpb.HandlerServer, req *pluginpb.HandleRequest) []*pluginpb.Outcome {
	t.Helper()
	resp, err := s.Handle(context.Background(), req)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(resp.GetOutcomes()) != len(req.GetJobs()) {
		t.Fatalf("got %d outcomes for %d jobs", len(resp.GetOutcomes()), len(req.GetJobs()))
	}
	for i, o := range resp.GetOutcomes() {
		if o.GetJobId() != req.GetJobs()[i].GetId() {
			t.Fatalf("outcome %d is for job %q, want %q", i, o.GetJobId(), req.GetJobs()[i].GetId())
		}
	}
	return resp.GetOutcomes()
}

func wantOK(t *testing.T, o *pluginpb.Outcome, total int) {
	t.Helper()
	if o.GetStatus() != pluginpb.Outcome_OK {
		t.Fatalf("job %s: status %v (%s), want OK", o.GetJobId(), o.GetStatus(), o.GetError())
	}
	if !o.GetStateChanged() {
		t.Fatalf("job %s: state not changed", o.GetJobId())
	}
	if want := fmt.Sprintf(`{"total":%d}`, total); string(o.GetState()) != want {
		t.Fatalf("job %s: state %s, want %s", o.GetJobId(), o.GetState(), want)
	}
}

func wantStatus(t *testing.T, o *pluginpb.Outcome, st pluginpb.Outcome_Status, errSubstr string) {
	t.Helper()
	if o.GetStatus() != st {
		t.Fatalf("job %s: status %v (%s), want %v", o.GetJobId(), o.GetStatus(), o.GetError(), st)
	}
	if !strings.Contains(o.GetError(), errSubstr) {
		t.Fatalf("job %s: error %q does not mention %q", o.GetJobId(), o.GetError(), errSubstr)
	}
	if o.GetStateChanged() || o.GetState() != nil || o.GetResult() != nil || o.GetEmits() != nil {
		t.Fatalf("job %s: a %v outcome carries effects: %v", o.GetJobId(), st, o)
	}
}

func TestStateThreadsThroughBatch(t *testing.T) {
	t.Parallel()
	p := newTestPlugin(t)
	out := handle(t, p, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{
			{Type: "counter", Key: "a", State: []byte(`{"total":10}`)},
			{Type: "counter", Key: "b"},
		},
		Jobs: []*pluginpb.Job{addJob("1", "a", 1), addJob("2", "b", 5), addJob("3", "a", 2), addJob("4", "c", 3)},
	})
	wantOK(t, out[0], 11)
	wantOK(t, out[1], 5)
	wantOK(t, out[2], 13) // sees job 1's state, not the request's
	wantOK(t, out[3], 3)  // no entity sent: starts empty
	if got := string(out[2].GetResult()); got != `{"total":13}` {
		t.Errorf("result = %s", got)
	}
	emits := out[2].GetEmits()
	if len(emits) != 1 || emits[0].GetHandler() != "audit.record" || emits[0].GetKey() != "a" || string(emits[0].GetPayload()) != `{"n":2}` {
		t.Errorf("emits = %v", emits)
	}
}

func TestUnchangedStateIsNotSent(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "counter", Key: "a", State: []byte(`{"total":1}`)}},
		Jobs:     []*pluginpb.Job{job("1", "counter.noop", "a", `{}`)},
	})
	if o := out[0]; o.GetStatus() != pluginpb.Outcome_OK || o.GetStateChanged() || o.GetState() != nil {
		t.Fatalf("noop outcome = %v", o)
	}
}

func TestRetryDiscardsState(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "counter", Key: "a", State: []byte(`{"total":10}`)}},
		Jobs:     []*pluginpb.Job{addJob("1", "a", 1), addJob("2", "a", nRetry), addJob("3", "a", nError), addJob("4", "a", 2)},
	})
	wantOK(t, out[0], 11)
	wantStatus(t, out[1], pluginpb.Outcome_RETRY, "rate limited")
	if got := out[1].GetRetryAfterMs(); got != 1500 {
		t.Errorf("retry_after_ms = %d, want 1500", got)
	}
	wantStatus(t, out[2], pluginpb.Outcome_RETRY, "connection reset")
	if got := out[2].GetRetryAfterMs(); got != 0 {
		t.Errorf("plain error: retry_after_ms = %d, want 0", got)
	}
	wantOK(t, out[3], 13) // neither retried job's save leaked
}

func TestFailIsPermanent(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{addJob("1", "a", -1), addJob("2", "a", 4)},
	})
	wantStatus(t, out[0], pluginpb.Outcome_FAIL, "n must not be negative, got -1")
	wantOK(t, out[1], 4)
}

func TestFailWinsOverRetryWhenWrapped(t *testing.T) {
	t.Parallel()
	p := New("x", "1", Handler("x.y", func(*Call) error {
		return fmt.Errorf("outer: %w", RetryAfter(Fail(errors.New("bad input")), time.Second))
	}))
	out := handle(t, p, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("1", "x.y", "k", `{}`)}})
	wantStatus(t, out[0], pluginpb.Outcome_FAIL, "bad input")
}

func TestPanicBecomesRetry(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{addJob("1", "a", nPanic), addJob("2", "a", 1)},
	})
	wantStatus(t, out[0], pluginpb.Outcome_RETRY, "panicked: unlucky number")
	wantOK(t, out[1], 1)
}

func TestUnknownHandlerFails(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{job("1", "counter.subtract", "a", `{"n":1}`), addJob("2", "a", 1)},
	})
	wantStatus(t, out[0], pluginpb.Outcome_FAIL, `unknown handler "counter.subtract"`)
	wantOK(t, out[1], 1)
}

func TestDecodeErrorFails(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			job("1", "counter.add", "a", `not json`),
			job("2", "counter.add", "a", `{"n":"three"}`),
			job("3", "counter.add", "a", ``),
		},
	})
	wantStatus(t, out[0], pluginpb.Outcome_FAIL, "decode counter.add payload")
	wantStatus(t, out[1], pluginpb.Outcome_FAIL, "decode counter.add payload")
	wantStatus(t, out[2], pluginpb.Outcome_FAIL, "payload is empty")
}

func TestCorruptStateRetries(t *testing.T) {
	t.Parallel()
	out := handle(t, newTestPlugin(t), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "counter", Key: "a", State: []byte(`{"total":`)}},
		Jobs:     []*pluginpb.Job{addJob("1", "a", 1)},
	})
	wantStatus(t, out[0], pluginpb.Outcome_RETRY, `load counter "a" state`)
}

func TestLoadSeesOwnSave(t *testing.T) {
	t.Parallel()
	p := New("x", "1", Handler("x.y", func(c *Call) error {
		if found, err := c.Load(&counter{}); found || err != nil {
			return Failf("fresh entity: found=%v err=%v", found, err)
		}
		if err := c.Save(counter{Total: 5}); err != nil {
			return err
		}
		var s counter
		if found, err := c.Load(&s); !found || err != nil || s.Total != 5 {
			return Failf("after save: found=%v err=%v state=%+v", found, err, s)
		}
		return nil
	}))
	out := handle(t, p, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("1", "x.y", "k", `{}`)}})
	if out[0].GetStatus() != pluginpb.Outcome_OK {
		t.Fatal(out[0].GetError())
	}
}

func TestCancelledContextStopsBatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestPlugin(t).Handle(ctx, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{addJob("1", "a", 1)}})
	if err == nil {
		t.Fatal("Handle with a cancelled context succeeded")
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	resp, err := newTestPlugin(t).Describe(context.Background(), &pluginpb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetName() != "counters" || resp.GetVersion() != "1.2.3" || len(resp.GetHandlers()) != 2 {
		t.Fatalf("Describe = %v", resp)
	}
	h := resp.GetHandlers()[0]
	if h.GetName() != "counter.add" || h.GetTimeoutMs() != 2000 || h.GetMaxAttempts() != 3 {
		t.Errorf("first handler = %v", h)
	}
	if h := resp.GetHandlers()[1]; h.GetName() != "counter.noop" || h.GetTimeoutMs() != 0 || h.GetMaxAttempts() != 0 {
		t.Errorf("second handler = %v", h)
	}
}

func TestNewPanicsOnBadDeclarations(t *testing.T) {
	t.Parallel()
	noop := func(*Call) error { return nil }
	tests := map[string]func(){
		"empty plugin name": func() { New("", "1") },
		"empty handler":     func() { New("p", "1", Handler("", noop)) },
		"nil function":      func() { New("p", "1", Handler("a.b", nil)) },
		"negative timeout":  func() { New("p", "1", Handler("a.b", noop, Timeout(-time.Second))) },
		"duplicate":         func() { New("p", "1", Handler("a.b", noop), Handler("a.b", noop)) },
	}
	for name, fn := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: New did not panic", name)
				}
			}()
			fn()
		}()
	}
}

// TestGRPCRoundTrip runs a batch through go-plugin's real gRPC plumbing,
// in process.
func TestGRPCRoundTrip(t *testing.T) {
	t.Parallel()
	client, server := plugin.TestPluginGRPCConn(t, false, plugins.PluginSet(newTestPlugin(t)))
	defer client.Close()
	defer server.Stop()

	raw, err := client.Dispense(plugins.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	hc, ok := raw.(pluginpb.HandlerClient)
	if !ok {
		t.Fatalf("dispensed %T, want pluginpb.HandlerClient", raw)
	}
	ctx := context.Background()
	desc, err := hc.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil || desc.GetName() != "counters" {
		t.Fatalf("Describe = %v, %v", desc, err)
	}
	resp, err := hc.Handle(ctx, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "counter", Key: "a", State: []byte(`{"total":1}`)}},
		Jobs:     []*pluginpb.Job{addJob("1", "a", 2), addJob("2", "a", nPanic), addJob("3", "a", 3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := resp.GetOutcomes()
	if len(out) != 3 {
		t.Fatalf("%d outcomes", len(out))
	}
	wantOK(t, out[0], 3)
	wantStatus(t, out[1], pluginpb.Outcome_RETRY, "panicked")
	wantOK(t, out[2], 6)
}

// TestLargeBatch checks that both ends raise gRPC's 4 MiB default, using
// the same server and dial options Serve and the host use.
func TestLargeBatch(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := plugins.NewGRPCServer(nil)
	pluginpb.RegisterHandlerServer(srv, New("big", "1", Handler("blob.put", func(c *Call) error {
		var v string
		if err := c.Decode(&v); err != nil {
			return err
		}
		return c.Save(v)
	})))
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.Dial(lis.Addr().String(),
		append(plugins.DialOptions(plugins.MaxMessageBytes), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	big, _ := json.Marshal(strings.Repeat("x", 6<<20))
	resp, err := pluginpb.NewHandlerClient(conn).Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{{Id: "1", Handler: "blob.put", Key: "k", Payload: big}},
	})
	if err != nil {
		t.Fatalf("6 MiB batch: %v", err)
	}
	if o := resp.GetOutcomes()[0]; o.GetStatus() != pluginpb.Outcome_OK || !bytes.Equal(o.GetState(), big) {
		t.Fatalf("outcome status %v, %d state bytes", o.GetStatus(), len(o.GetState()))
	}
}

// TestLogLinesAreHclogJSON checks the keys go-plugin's host parses, so
// plugin logs keep their level in the worker's log.
func TestLogLinesAreHclogJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	slog.New(newLogHandler(&buf)).Warn("disk almost full", "free_mb", 12)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%s: %v", buf.Bytes(), err)
	}
	if line["@level"] != "warn" || line["@message"] != "disk almost full" || line["free_mb"] != 12.0 {
		t.Fatalf("log line = %s", buf.Bytes())
	}
	if _, err := time.Parse(hclogTimeFormat, line["@timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
}
