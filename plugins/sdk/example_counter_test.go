package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type Add struct {
	N int `json:"n"`
}

type Counter struct {
	Total int `json:"total"`
}

func add(c *sdk.Call, in Add, s Counter) (Counter, error) {
	if in.N <= 0 {
		return s, sdk.Failf("n must be positive, got %d", in.N) // dead-lettered
	}
	s.Total += in.N
	return s, c.SetResult(s) // Typed saves the state returned
}

// The complete plugin of the package documentation, run in process. Its
// main would be:
//
//	sdk.Serve(sdk.Handler("counter.add", sdk.Typed(add), sdk.ShapeOf[Add]()))
func Example_counter() {
	p := sdk.New("counter", "1.0.0", sdk.Handler("counter.add", sdk.Typed(add), sdk.ShapeOf[Add]()))

	resp, err := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "counter", Key: "apples", State: []byte(`{"total":1}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "j1", Handler: "counter.add", Key: "apples", Payload: []byte(`{"n":2}`), Attempt: 1},
			{Id: "j2", Handler: "counter.add", Key: "apples", Payload: []byte(`{"n":-1}`), Attempt: 1},
		},
	})
	if err != nil {
		panic(err)
	}
	for _, o := range resp.Outcomes {
		if o.Status != pluginpb.Outcome_OK {
			fmt.Println(o.JobId, o.Status, o.Error)
			continue
		}
		fmt.Println(o.JobId, o.Status, "state", string(o.State), "result", string(o.Result))
	}
	// Output:
	// j1 OK state {"total":3} result {"total":3}
	// j2 FAIL n must be positive, got -1
}
