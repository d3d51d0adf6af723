package sdk

import (
	"context"
	"encoding/json"
	"fmt"
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

// TestRejectCommitsNothing: a rejected job's outcome is REJECTED with its
// reason and carries no state, result or emits; the next job of the batch
// sees the state from before it.
func TestRejectCommitsNothing(t *testing.T) {
	t.Parallel()
	reserve := Typed(func(c *Call, in addPayload, s stock) (stock, error) {
		s.OnHand -= in.N
		if err := c.Emit("order.reserved", "o-1", in); err != nil {
			return s, err
		}
		if err := c.SetResult(s); err != nil {
			return s, err
		}
		if s.OnHand < 0 {
			return s, fmt.Errorf("reserve: %w", Rejectf("out of stock: %d left", s.OnHand+in.N))
		}
		return s, nil
	})
	p := New("inv", "1", Handler("stock.reserve", reserve))
	out := handle(t, p, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "stock", Key: "sku-1", State: []byte(`{"on_hand":3}`)}},
		Jobs:     []*pluginpb.Job{job("1", "stock.reserve", "sku-1", `{"n":5}`), job("2", "stock.reserve", "sku-1", `{"n":2}`)},
	})
	o := out[0]
	if o.GetStatus() != pluginpb.Outcome_REJECTED || o.GetError() != "reserve: out of stock: 3 left" ||
		o.GetStateChanged() || len(o.GetResult()) > 0 || len(o.GetEmits()) > 0 {
		t.Fatalf("rejected job: %v, want REJECTED with its reason and nothing else", o)
	}
	if out[1].GetStatus() != pluginpb.Outcome_OK || string(out[1].GetState()) != `{"on_hand":1}` {
		t.Fatalf("the next job: %v, want OK from the state before the rejected one", out[1])
	}
	if err := Reject(""); err.Error() != "rejected" {
		t.Errorf("Reject(\"\") = %q", err)
	}
}
