package sdk

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/corralhq/corral/plugins/pluginpb"
)

type stock struct {
	OnHand int `json:"on_hand"`
}

// TestDeclaredEntity: a handler that declares its entity is handed that
// entity's state, not the one its name starts with, and Describe says so.
func TestDeclaredEntity(t *testing.T) {
	t.Parallel()
	var seen string
	add := Typed(func(c *Call, in addPayload, s stock) (stock, error) {
		seen = c.Entity()
		s.OnHand += in.N
		return s, nil
	})
	p := New("inv", "1",
		Handler("stock.add", add, Entity("inventory")),
		Handler("stock.count", func(*Call) error { return nil }),
	)
	resp, err := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hs := resp.GetHandlers(); hs[0].GetEntity() != "inventory" || hs[1].GetEntity() != "" {
		t.Fatalf("Describe = %v, want entity inventory for stock.add and none declared for stock.count", hs)
	}
	out := handle(t, p, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{
			{Type: "stock", Key: "sku-1", State: []byte(`{"on_hand":100}`)},
			{Type: "inventory", Key: "sku-1", State: []byte(`{"on_hand":3}`)},
		},
		Jobs: []*pluginpb.Job{job("1", "stock.add", "sku-1", `{"n":2}`), job("2", "stock.add", "sku-1", `{"n":1}`)},
	})
	if seen != "inventory" {
		t.Errorf("Call.Entity() = %q, want inventory", seen)
	}
	for i, want := range []string{`{"on_hand":5}`, `{"on_hand":6}`} {
		if out[i].GetStatus() != pluginpb.Outcome_OK || string(out[i].GetState()) != want {
			t.Errorf("job %d: %v %s, want OK with state %s", i+1, out[i].GetStatus(), out[i].GetState(), want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an empty entity name")
		}
	}()
	New("inv", "1", Handler("stock.add", add, Entity("")))
}

// TestInternalIsDeclared: Internal reaches the worker in Describe; the
// handler still runs the jobs it is sent (emitted ones).
func TestInternalIsDeclared(t *testing.T) {
	t.Parallel()
	p := New("inv", "1",
		Handler("order.reserved", func(c *Call) error { return c.SetResult("ok") }, Internal()),
		Handler("stock.add", func(*Call) error { return nil }),
	)
	resp, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	if hs := resp.GetHandlers(); !hs[0].GetInternal() || hs[1].GetInternal() {
		t.Fatalf("Describe = %v, want order.reserved internal and stock.add not", hs)
	}
	out := handle(t, p, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{job("s~0", "order.reserved", "o-1", `{}`)}})
	if out[0].GetStatus() != pluginpb.Outcome_OK || string(out[0].GetResult()) != `"ok"` {
		t.Fatalf("emitted job to an internal handler: %v", out[0])
	}
}

type reserveOrder struct {
	SKU  string          `json:"sku"`
	Qty  int64           `json:"qty"`
	Note string          `json:"note,omitempty"`
	Meta json.RawMessage `json:"meta"`
}

// TestShapeOfIsClosed: ShapeOf declares the struct's optional fields and
// refuses unknown ones, unless the handler allows them; PayloadShape
// alone leaves unknown fields allowed unless NoUnknownFields.
func TestShapeOfIsClosed(t *testing.T) {
	t.Parallel()
	noop := func(*Call) error { return nil }
	p := New("inv", "1",
		Handler("stock.reserve", noop, ShapeOf[reserveOrder]()),
		Handler("stock.loose", noop, AllowUnknownFields(), ShapeOf[reserveOrder]()),
		Handler("stock.add", noop, PayloadShape(map[string]string{"qty": "integer"})),
		Handler("stock.strict", noop, NoUnknownFields(), PayloadShape(map[string]string{"qty": "integer"}),
			OptionalFields(map[string]string{"note": "string", "doc": "any"})),
	)
	resp, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	hs := resp.GetHandlers()
	for i, want := range []struct {
		shape, optional string
		closed          bool
	}{
		{`{"qty":"integer","sku":"string"}`, `{"meta":"any","note":"string"}`, true},
		{`{"qty":"integer","sku":"string"}`, `{"meta":"any","note":"string"}`, false},
		{`{"qty":"integer"}`, ``, false},
		{`{"qty":"integer"}`, `{"doc":"any","note":"string"}`, true},
	} {
		h := hs[i]
		if h.GetPayloadShape() != want.shape || h.GetPayloadOptional() != want.optional || h.GetPayloadClosed() != want.closed {
			t.Errorf("%s: shape %s optional %s closed %v, want %s %s %v", h.GetName(),
				h.GetPayloadShape(), h.GetPayloadOptional(), h.GetPayloadClosed(), want.shape, want.optional, want.closed)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an optional field of an unknown type")
		}
	}()
	New("inv", "1", Handler("a.b", noop, OptionalFields(map[string]string{"when": "date"})))
}
