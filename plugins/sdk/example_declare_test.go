package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type stockAdd struct {
	Qty int64 `json:"qty"`
}

type stockLevel struct {
	OnHand int64 `json:"on_hand"`
}

// Entity names the entity type a handler works on when its name does not
// start with it. stock.add and stock.count both declare inventory, so they
// share the inventory state of a key; the worker sends that state, and
// coordinator state inventory KEY prints it.
func ExampleEntity() {
	add := sdk.Typed(func(c *sdk.Call, in stockAdd, s stockLevel) (stockLevel, error) {
		s.OnHand += in.Qty
		return s, nil
	})
	count := func(c *sdk.Call) error {
		s, err := sdk.State[stockLevel](c)
		if err != nil {
			return err
		}
		return c.SetResult(fmt.Sprintf("%s %s: %d on hand", c.Entity(), c.Key(), s.OnHand))
	}
	p := sdk.New("inventory", "1.0.0",
		sdk.Handler("stock.add", add, sdk.Entity("inventory")),
		sdk.Handler("stock.count", count, sdk.Entity("inventory")),
	)

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	for _, h := range desc.Handlers {
		fmt.Println(h.Name, "entity", h.Entity)
	}
	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "inventory", Key: "sku-1", State: []byte(`{"on_hand":3}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "a1", Handler: "stock.add", Key: "sku-1", Payload: []byte(`{"qty":2}`), Attempt: 1},
			{Id: "n1", Handler: "stock.count", Key: "sku-1", Payload: []byte(`{}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		fmt.Printf("%s %v state=%s result=%s\n", o.JobId, o.Status, o.State, o.Result)
	}
	// Output:
	// stock.add entity inventory
	// stock.count entity inventory
	// a1 OK state={"on_hand":5} result=
	// n1 OK state= result="inventory sku-1: 5 on hand"
}

type reservation struct {
	Order string `json:"order"`
	Qty   int64  `json:"qty"`
}

// Internal declares a handler that only emitted jobs run: the worker
// refuses its jobs at submit and call ("handler order.reserved is
// internal: only other handlers may emit it"), and runs the ones another
// handler emits, like stock.reserve's here.
func ExampleInternal() {
	reserve := func(c *sdk.Call) error {
		r, err := sdk.Payload[reservation](c)
		if err != nil {
			return err
		}
		return c.Emit("order.reserved", r.Order, map[string]any{"sku": c.Key(), "qty": r.Qty})
	}
	reserved := func(c *sdk.Call) error { return nil }
	p := sdk.New("shop", "1.0.0",
		sdk.Handler("stock.reserve", reserve, sdk.Entity("inventory")),
		sdk.Handler("order.reserved", reserved, sdk.Internal()),
	)

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	for _, h := range desc.Handlers {
		fmt.Println(h.Name, "internal", h.Internal)
	}
	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{{Id: "r1", Handler: "stock.reserve", Key: "sku-1", Payload: []byte(`{"order":"o-7","qty":2}`), Attempt: 1}},
	})
	for _, e := range resp.Outcomes[0].Emits {
		fmt.Println("emits", e.Handler, e.Key, string(e.Payload))
	}
	// Output:
	// stock.reserve internal false
	// order.reserved internal true
	// emits order.reserved o-7 {"qty":2,"sku":"sku-1"}
}
