package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type quote struct {
	Item       string `json:"item"`
	PriceCents int64  `json:"price_cents"`
}

// SetResult answers whoever waits on the job (coordinator submit --wait,
// coordinator call, the Go client's Call and Results). The result is
// committed only if the handler returns nil; the last SetResult wins.
func ExampleCall_SetResult() {
	prices := map[string]int64{"apples": 120, "pears": 90}
	price := func(c *sdk.Call) error {
		cents, ok := prices[c.Key()]
		if !ok {
			return sdk.Failf("no price for %q", c.Key())
		}
		if err := c.SetResult(quote{Item: c.Key()}); err != nil {
			return err
		}
		return c.SetResult(quote{Item: c.Key(), PriceCents: cents}) // replaces the first
	}
	p := sdk.New("prices", "1.0.0", sdk.Handler("price.quote", price))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "q1", Handler: "price.quote", Key: "apples", Payload: []byte(`{}`), Attempt: 1},
			{Id: "q2", Handler: "price.quote", Key: "kiwis", Payload: []byte(`{}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		if o.Status != pluginpb.Outcome_OK {
			fmt.Println(o.JobId, o.Status, "no result:", o.Error)
			continue
		}
		fmt.Println(o.JobId, o.Status, string(o.Result))
	}
	// Output:
	// q1 OK {"item":"apples","price_cents":120}
	// q2 FAIL no result: no price for "kiwis"
}
