package sdk

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

type shapeEmbedded struct {
	Region string `json:"region"`
}

type shapeAll struct {
	shapeEmbedded
	Amount   int64             `json:"amount_cents"`
	Rate     float64           `json:"rate"`
	OK       bool              `json:"ok"`
	Tags     []string          `json:"tags"`
	Raw      []byte            `json:"raw"`
	Meta     map[string]string `json:"meta"`
	When     time.Time         `json:"when"`
	Ptr      *int              `json:"ptr"`
	Note     string            `json:"note,omitempty"`
	Skip     string            `json:"-"`
	Any      any               `json:"any"`
	Doc      json.RawMessage   `json:"doc"`
	Untagged string
	private  int
}

func TestShapeOf(t *testing.T) {
	t.Parallel()
	var h HandlerDef
	ShapeOf[shapeAll]()(&h)
	if h.shapeErr != nil {
		t.Fatal(h.shapeErr)
	}
	want := `{"Untagged":"string","amount_cents":"integer","meta":"object","ok":"boolean","ptr":"integer",` +
		`"rate":"number","raw":"string","region":"string","tags":"array","when":"string"}`
	if h.payloadShape != want {
		t.Fatalf("shape = %s\nwant    %s", h.payloadShape, want)
	}
	if wantOpt := `{"any":"any","doc":"any","note":"string"}`; h.payloadOptional != wantOpt || !h.closed() {
		t.Fatalf("optional = %s, closed %v; want %s, closed", h.payloadOptional, h.closed(), wantOpt)
	}
	var bad HandlerDef
	ShapeOf[int]()(&bad)
	PayloadShape(map[string]string{"n": "int"})(&bad)
	if bad.shapeErr == nil || !strings.Contains(bad.shapeErr.Error(), `"int"`) {
		t.Fatalf("bad shape error = %v", bad.shapeErr)
	}
}

func TestDescribeDeclaresShapeAndConcurrency(t *testing.T) {
	t.Parallel()
	p := New("x", "1", Handler("order.place", func(*Call) error { return nil },
		PayloadShape(map[string]string{"sku": "string", "qty": "integer"}), Concurrency(4)))
	resp, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	h := resp.GetHandlers()[0]
	if h.GetPayloadShape() != `{"qty":"integer","sku":"string"}` || h.GetConcurrency() != 4 {
		t.Fatalf("handler spec = %v", h)
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted a bad payload shape")
		}
	}()
	New("x", "1", Handler("a.b", func(*Call) error { return nil }, PayloadShape(map[string]string{"a": "date"})))
}

type tally struct {
	Total int `json:"total"`
	Count int `json:"count"`
}

func TestTyped(t *testing.T) {
	t.Parallel()
	p := New("t", "1", Handler("tally.add", Typed(func(c *Call, in addPayload, s tally) (tally, error) {
		if in.N < 0 {
			return s, Failf("n must not be negative")
		}
		s.Total += in.N
		s.Count++
		return s, c.SetResult(s.Total)
	})))
	out := handle(t, p, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "tally", Key: "a", State: []byte(`{"total":10,"count":1}`)}},
		Jobs: []*pluginpb.Job{
			job("1", "tally.add", "a", `{"n":5}`),
			job("2", "tally.add", "a", `{"n":-1}`),
			job("3", "tally.add", "a", `{"n":`),
			job("4", "tally.add", "b", `{"n":2}`),
		},
	})
	if o := out[0]; o.GetStatus() != pluginpb.Outcome_OK || string(o.GetState()) != `{"total":15,"count":2}` || string(o.GetResult()) != "15" {
		t.Fatalf("job 1 = %v", o)
	}
	wantStatus(t, out[1], pluginpb.Outcome_FAIL, "negative")
	wantStatus(t, out[2], pluginpb.Outcome_FAIL, "decode tally.add payload")
	if o := out[3]; string(o.GetState()) != `{"total":2,"count":1}` {
		t.Fatalf("job 4 on a fresh entity = %v", o)
	}
}

func TestPayloadAndState(t *testing.T) {
	t.Parallel()
	p := New("t", "1", Handler("tally.peek", func(c *Call) error {
		in, err := Payload[addPayload](c)
		if err != nil {
			return err
		}
		s, err := State[tally](c)
		if err != nil {
			return err
		}
		return c.SetResult([]int{in.N, s.Total})
	}))
	out := handle(t, p, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "tally", Key: "a", State: []byte(`{"total":7}`)}},
		Jobs:     []*pluginpb.Job{job("1", "tally.peek", "a", `{"n":3}`), job("2", "tally.peek", "z", `{"n":1}`)},
	})
	if string(out[0].GetResult()) != "[3,7]" || string(out[1].GetResult()) != "[1,0]" || out[0].GetStateChanged() {
		t.Fatalf("outcomes = %v", out)
	}
}

func TestDefaultIdentity(t *testing.T) {
	t.Parallel()
	if programName() == "" || buildVersion() == "" {
		t.Fatalf("name %q version %q", programName(), buildVersion())
	}
}

// TestDescribeOverGRPC checks that the per-handler declarations survive
// go-plugin's gRPC transport, in process.
func TestDescribeOverGRPC(t *testing.T) {
	t.Parallel()
	p := New("shop", "2.0.0",
		Handler("order.place", func(*Call) error { return nil }, ShapeOf[addPayload](), Concurrency(2), Timeout(time.Second)),
		Handler("stock.take", func(*Call) error { return nil }, MaxAttempts(9)),
	)
	client, server := plugin.TestPluginGRPCConn(t, false, plugins.PluginSet(p))
	defer client.Close()
	defer server.Stop()
	raw, err := client.Dispense(plugins.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := raw.(pluginpb.HandlerClient).Describe(context.Background(), &pluginpb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hs := desc.GetHandlers()
	if desc.GetName() != "shop" || desc.GetVersion() != "2.0.0" || len(hs) != 2 ||
		hs[0].GetPayloadShape() != `{"n":"integer"}` || hs[0].GetConcurrency() != 2 || hs[0].GetTimeoutMs() != 1000 ||
		hs[1].GetMaxAttempts() != 9 || hs[1].GetPayloadShape() != "" {
		t.Fatalf("Describe over gRPC = %v", desc)
	}
}
