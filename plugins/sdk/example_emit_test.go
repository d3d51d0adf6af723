package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type order struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

type reserve struct {
	Order string `json:"order"`
	Qty   int    `json:"qty"`
}

// A handler writes only its own entity; it changes another one by emitting
// a job to it. Here an order (entity "order", key: the order id) asks the
// item's stock (entity "stock", key: the item) to reserve the quantity.
// The worker commits the emits with the job, then submits them to the
// partitions of their keys, with ids derived from the job's ("o1~0"). A
// job that fails emits nothing.
func ExampleCall_Emit() {
	place := func(c *sdk.Call) error {
		o, err := sdk.Payload[order](c)
		if err != nil {
			return err
		}
		if o.Qty <= 0 {
			return sdk.Failf("qty must be positive, got %d", o.Qty)
		}
		if err := c.Save(o); err != nil {
			return err
		}
		return c.Emit("stock.reserve", o.Item, reserve{Order: c.Key(), Qty: o.Qty})
	}
	p := sdk.New("shop", "1.0.0", sdk.Handler("order.place", place))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "o1", Handler: "order.place", Key: "order-17", Payload: []byte(`{"item":"apples","qty":3}`), Attempt: 1},
			{Id: "o2", Handler: "order.place", Key: "order-18", Payload: []byte(`{"item":"pears","qty":0}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		fmt.Println(o.JobId, o.Status, len(o.Emits), "emits")
		for _, e := range o.Emits {
			fmt.Println("  ", e.Handler, e.Key, string(e.Payload))
		}
	}
	// Output:
	// o1 OK 1 emits
	//    stock.reserve apples {"order":"order-17","qty":3}
	// o2 FAIL 0 emits
}
