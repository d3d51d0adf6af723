package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

// The smallest useful handler: it decodes the payload and answers with a
// result, keeping no state. The plugin runs in process here, through
// Handle, the method the worker calls; a plugin's main would call Serve.
func ExampleHandler() {
	greet := func(c *sdk.Call) error {
		var in struct {
			Name string `json:"name"`
		}
		if err := c.Decode(&in); err != nil {
			return err
		}
		return c.SetResult("hello, " + in.Name)
	}
	p := sdk.New("greeter", "1.0.0", sdk.Handler("greeter.greet", greet))

	resp, err := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "g1", Handler: "greeter.greet", Key: "ada", Payload: []byte(`{"name":"Ada"}`), Attempt: 1},
		},
	})
	if err != nil {
		panic(err)
	}
	o := resp.Outcomes[0]
	fmt.Println(o.JobId, o.Status, string(o.Result), o.StateChanged)
	// Output:
	// g1 OK "hello, Ada" false
}

// One plugin may serve handlers of several entity types. Describe is what
// the worker asks a plugin it launched; the entity type of each handler is
// its name up to the first dot, unless it declares another (Entity).
func ExampleNew() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("shop", "2.1.0",
		sdk.Handler("cart.add", noop),
		sdk.Handler("cart.checkout", noop),
		sdk.Handler("stock.reserve", noop),
	)

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Printf("%s@%s\n", desc.Name, desc.Version)
	for _, h := range desc.Handlers {
		fmt.Println(h.Name)
	}
	// Output:
	// shop@2.1.0
	// cart.add
	// cart.checkout
	// stock.reserve
}
