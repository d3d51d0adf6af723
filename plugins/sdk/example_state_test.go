package sdk_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type stock struct {
	OnHand int `json:"on_hand"`
}

type take struct {
	Qty int `json:"qty"`
}

// takeStock takes qty items from the stock entity of the job's key. A new
// item starts with 10 on hand.
func takeStock(c *sdk.Call) error {
	var t take
	if err := c.Decode(&t); err != nil {
		return err
	}
	s := stock{OnHand: 10} // Load leaves it as is when there is no state yet
	if _, err := c.Load(&s); err != nil {
		return err
	}
	if t.Qty > s.OnHand {
		return sdk.Failf("only %d on hand, %d asked", s.OnHand, t.Qty)
	}
	s.OnHand -= t.Qty
	return c.Save(s)
}

// Load gives the state committed before the batch, as changed by the
// earlier successful jobs of the same entity in the batch; an entity
// without state keeps the defaults. Each job's outcome carries the state
// it saved.
func ExampleCall_Load() {
	p := sdk.New("inventory", "1.0.0", sdk.Handler("stock.take", takeStock))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{
			{Type: "stock", Key: "apples", State: []byte(`{"on_hand":5}`)},
			{Type: "stock", Key: "pears"}, // no state yet
		},
		Jobs: []*pluginpb.Job{
			{Id: "t1", Handler: "stock.take", Key: "apples", Payload: []byte(`{"qty":2}`), Attempt: 1},
			{Id: "t2", Handler: "stock.take", Key: "pears", Payload: []byte(`{"qty":4}`), Attempt: 1},
			{Id: "t3", Handler: "stock.take", Key: "apples", Payload: []byte(`{"qty":3}`), Attempt: 1},
			{Id: "t4", Handler: "stock.take", Key: "apples", Payload: []byte(`{"qty":1}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		if o.Status != pluginpb.Outcome_OK {
			fmt.Println(o.JobId, o.Status, o.Error)
			continue
		}
		fmt.Println(o.JobId, o.Status, string(o.State))
	}
	// Output:
	// t1 OK {"on_hand":3}
	// t2 OK {"on_hand":6}
	// t3 OK {"on_hand":0}
	// t4 FAIL only 0 on hand, 1 asked
}

// Save takes effect only when the handler returns nil: the state a failed
// job saved is thrown away, and the next job of the entity sees the state
// from before it.
func ExampleCall_Save() {
	flaky := func(c *sdk.Call) error {
		var s stock
		if _, err := c.Load(&s); err != nil {
			return err
		}
		s.OnHand++
		if err := c.Save(s); err != nil {
			return err
		}
		if c.ID() == "r2" {
			return errors.New("lost the connection to the scale") // retried later
		}
		return nil
	}
	p := sdk.New("inventory", "1.0.0", sdk.Handler("stock.restock", flaky))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "stock", Key: "apples", State: []byte(`{"on_hand":1}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "r1", Handler: "stock.restock", Key: "apples", Payload: []byte(`{}`), Attempt: 1},
			{Id: "r2", Handler: "stock.restock", Key: "apples", Payload: []byte(`{}`), Attempt: 1},
			{Id: "r3", Handler: "stock.restock", Key: "apples", Payload: []byte(`{}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		if !o.StateChanged {
			fmt.Println(o.JobId, o.Status, "state unchanged:", o.Error)
			continue
		}
		fmt.Println(o.JobId, o.Status, string(o.State))
	}
	// Output:
	// r1 OK {"on_hand":2}
	// r2 RETRY state unchanged: lost the connection to the scale
	// r3 OK {"on_hand":3}
}
