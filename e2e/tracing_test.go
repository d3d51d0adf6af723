package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/internal/testenv"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpSpan is what the test receiver keeps of a span.
type otlpSpan struct {
	service, name     string
	trace, id, parent string
	links             []string // trace ids linked to
	attrs             map[string]string
}

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes the exports
// POSTed to /v1/traces and keeps their spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []otlpSpan
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	r := &otlpReceiver{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve)}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return r, "http://" + lis.Addr().String()
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" {
		http.NotFound(w, req)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var in coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &in)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range in.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, spanOf(service, s))
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func spanOf(service string, s *tracepb.Span) otlpSpan {
	o := otlpSpan{service: service, name: s.Name, trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
		parent: hex.EncodeToString(s.ParentSpanId), attrs: map[string]string{}}
	for _, l := range s.Links {
		o.links = append(o.links, hex.EncodeToString(l.TraceId))
	}
	for _, kv := range s.Attributes {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			o.attrs[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			o.attrs[kv.Key] = strconv.FormatInt(v.IntValue, 10)
		default:
			o.attrs[kv.Key] = kv.GetValue().String()
		}
	}
	return o
}

// find is the first span named name whose attribute job is jobID.
func (r *otlpReceiver) find(name, jobID string) (otlpSpan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if s.name == name && (jobID == "" || s.attrs["corral.job.id"] == jobID) {
			return s, true
		}
	}
	return otlpSpan{}, false
}

// inTrace is every span of trace id, by id.
func (r *otlpReceiver) inTrace(trace string) map[string]otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]otlpSpan{}
	for _, s := range r.spans {
		if s.trace == trace {
			out[s.id] = s
		}
	}
	return out
}

func names(spans map[string]otlpSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.service+"/"+s.name)
	}
	sort.Strings(out)
	return out
}

// TestTracing runs two workers and the coordinator with the OTLP endpoint
// set, submits one donation and follows its trace: the coordinator's
// submit span, the worker's enqueue, then the batch span with the plugin
// call and the commit under it, each the child of the one before. The
// campaign credit the donation emits runs in a trace of its own that
// links to the donation's.
func TestTracing(t *testing.T) {
	c := newCluster(t)
	recv, endpoint := startOTLPReceiver(t)
	// Workers, their plugins and the coordinator all read the environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	c.start("w1")
	c.start("w2")

	if _, err := c.coordinator("submit", "--handler", "donor.donate", "--key", "alice",
		"--payload", `{"amount_cents": 500, "campaign": "wells"}`, "--id", "tr-1"); err != nil {
		t.Fatal(err)
	}
	var campaign ledger.CampaignState
	waitState(t, c, "campaign", "wells", &campaign, func() bool { return campaign.Count == 1 })

	var submit otlpSpan
	testenv.Eventually(t, 20*time.Second, func() error {
		var ok bool
		if submit, ok = recv.find("corral.submit", "tr-1"); !ok {
			return fmt.Errorf("no corral.submit span for tr-1")
		}
		spans := recv.inTrace(submit.trace)
		for _, want := range []string{"corral.enqueue", "corral.batch", "corral.plugin", "corral.commit"} {
			found := false
			for _, s := range spans {
				found = found || s.name == want
			}
			if !found {
				return fmt.Errorf("trace %s has %v, no %s yet", submit.trace, names(spans), want)
			}
		}
		return nil
	})
	if submit.service != "corral-coordinator" {
		t.Errorf("submit span from service %q, want corral-coordinator", submit.service)
	}
	spans := recv.inTrace(submit.trace)
	t.Logf("trace %s: %v", submit.trace, names(spans))
	// Each step is the child of the one before it.
	parentName := func(s otlpSpan) string { return spans[s.parent].name }
	for _, s := range spans {
		want := map[string]string{"corral.enqueue": "corral.submit", "corral.batch": "corral.enqueue",
			"corral.plugin": "corral.batch", "corral.commit": "corral.batch"}[s.name]
		if want != "" && parentName(s) != want {
			t.Errorf("%s span's parent is %q, want %s; trace: %v", s.name, parentName(s), want, names(spans))
		}
		if s.name == "corral.batch" && (s.attrs["corral.job.handler"] != "donor.donate" || s.attrs["corral.partition"] == "") {
			t.Errorf("batch span attributes %v", s.attrs)
		}
		if s.name != "corral.submit" && s.service != "corral-worker" {
			t.Errorf("%s span from service %q, want corral-worker", s.name, s.service)
		}
	}

	// The credit the donation emitted: a trace of its own, linked to it.
	var credit otlpSpan
	testenv.Eventually(t, 20*time.Second, func() error {
		var ok bool
		if credit, ok = recv.find("corral.batch", "tr-1~0"); !ok {
			return fmt.Errorf("no corral.batch span for the credit tr-1~0")
		}
		return nil
	})
	if credit.trace == submit.trace || !contains(credit.links, submit.trace) {
		t.Fatalf("credit's batch span in trace %s with links %v; want a new trace linked to %s", credit.trace, credit.links, submit.trace)
	}
	t.Logf("credit trace %s links to %v: %v", credit.trace, credit.links, names(recv.inTrace(credit.trace)))
	if credit.attrs["corral.job.parent"] != "tr-1" || credit.attrs["corral.job.handler"] != "campaign.credit" {
		t.Fatalf("credit's batch span attributes %v", credit.attrs)
	}
}
