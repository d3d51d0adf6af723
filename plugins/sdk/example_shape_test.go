package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

// placeOrder is a payload with an optional note.
type placeOrder struct {
	SKU  string `json:"sku"`
	Qty  int64  `json:"qty"`
	Note string `json:"note,omitempty"`
}

// ShapeOf refuses fields the struct does not have (NoUnknownFields), where
// Decode would ignore them: a payload with "qtty" for "qty" would
// otherwise reach the handler as an order of 0. The worker refuses it at
// submit:
//
//	payload does not match the handler's shape: field "qty" is missing (want integer), and field "qtty" is not one the handler takes
//
// Here, in process, Handle shows what Decode alone makes of it.
func ExampleNoUnknownFields() {
	place := func(c *sdk.Call) error {
		in, err := sdk.Payload[placeOrder](c)
		if err != nil {
			return err
		}
		return c.SetResult(in)
	}
	p := sdk.New("shop", "1.0.0",
		sdk.Handler("order.place", place, sdk.ShapeOf[placeOrder]()),
		// The same shape by hand: required, optional, and nothing else.
		sdk.Handler("order.quote", place,
			sdk.PayloadShape(map[string]string{"sku": "string", "qty": "integer"}),
			sdk.OptionalFields(map[string]string{"note": "string"}),
			sdk.NoUnknownFields()),
	)

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	for _, h := range desc.Handlers {
		fmt.Printf("%s required=%s optional=%s closed=%v\n", h.Name, h.PayloadShape, h.PayloadOptional, h.PayloadClosed)
	}
	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{{Id: "o1", Handler: "order.place", Key: "o-1", Payload: []byte(`{"sku":"sku-1","qtty":3}`), Attempt: 1}},
	})
	fmt.Println("decoded:", string(resp.Outcomes[0].Result))
	// Output:
	// order.place required={"qty":"integer","sku":"string"} optional={"note":"string"} closed=true
	// order.quote required={"qty":"integer","sku":"string"} optional={"note":"string"} closed=true
	// decoded: {"sku":"sku-1","qty":0}
}

// OptionalFields declares fields a payload may have: the worker checks the
// type of each one present (a null counts as absent) and lets it be
// absent. "any" takes a value of any type.
func ExampleOptionalFields() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("shop", "1.0.0", sdk.Handler("order.place", noop,
		sdk.PayloadShape(map[string]string{"sku": "string"}),
		sdk.OptionalFields(map[string]string{"note": "string", "meta": "any"})))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	h := desc.Handlers[0]
	fmt.Println(h.PayloadShape, h.PayloadOptional, h.PayloadClosed)
	// Output:
	// {"sku":"string"} {"meta":"any","note":"string"} false
}

// AllowUnknownFields, after ShapeOf, lets a payload carry fields the
// struct does not have: for payloads that hold more than the handler
// reads, such as events forwarded whole.
func ExampleAllowUnknownFields() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("shop", "1.0.0",
		sdk.Handler("order.audit", noop, sdk.ShapeOf[placeOrder](), sdk.AllowUnknownFields()))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	h := desc.Handlers[0]
	fmt.Println(h.PayloadShape, h.PayloadClosed)
	// Output:
	// {"qty":"integer","sku":"string"} false
}
