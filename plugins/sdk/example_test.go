package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type visit struct {
	Page string `json:"page"`
}

type visitor struct {
	Visits int `json:"visits"`
}

func countVisit(c *sdk.Call) error {
	var v visit
	if err := c.Decode(&v); err != nil {
		return err
	}
	var s visitor
	if _, err := c.Load(&s); err != nil {
		return err
	}
	s.Visits++
	if err := c.Save(s); err != nil {
		return err
	}
	return c.Emit("page.hit", v.Page, nil)
}

// A plugin is a pluginpb.HandlerServer, so it runs in process too; a
// plugin's main would call p.Serve() instead. The job whose payload does
// not decode fails for good and leaves the state as it was.
func Example() {
	p := sdk.New("visits", "1.0.0", sdk.Handler("visitor.visit", countVisit))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "visitor", Key: "ada", State: []byte(`{"visits":41}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "j1", Handler: "visitor.visit", Key: "ada", Payload: []byte(`{"page":"/home"}`)},
			{Id: "j2", Handler: "visitor.visit", Key: "ada", Payload: []byte(`{"page`)},
			{Id: "j3", Handler: "visitor.visit", Key: "ada", Payload: []byte(`{"page":"/about"}`)},
		},
	})
	for _, o := range resp.Outcomes {
		fmt.Println(o.JobId, o.Status, string(o.State), len(o.Emits))
	}
	// Output:
	// j1 OK {"visits":42} 1
	// j2 FAIL  0
	// j3 OK {"visits":43} 1
}

type donation struct {
	AmountCents int64  `json:"amount_cents"`
	Campaign    string `json:"campaign"`
}

type donor struct {
	TotalCents int64 `json:"total_cents"`
	Count      int64 `json:"count"`
}

// donate is a whole handler: Typed decodes the payload, loads the state and
// saves what the function returns.
var donate = sdk.Typed(func(c *sdk.Call, d donation, s donor) (donor, error) {
	if d.AmountCents <= 0 {
		return s, sdk.Failf("amount must be positive, got %d", d.AmountCents)
	}
	s.TotalCents += d.AmountCents
	s.Count++
	return s, c.Emit("campaign.credit", d.Campaign, map[string]int64{"amount_cents": d.AmountCents})
})

// A plugin's whole main: name and version come from the binary. (Not run
// here: Serve waits for the worker that launched the program.)
func ExampleServe() {
	sdk.Serve(sdk.Handler("donor.donate", donate, sdk.ShapeOf[donation](), sdk.MaxAttempts(5)))
}

func ExampleTyped() {
	p := sdk.New("donations", "1.0.0", sdk.Handler("donor.donate", donate, sdk.ShapeOf[donation]()))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Println(desc.Handlers[0].Name, desc.Handlers[0].PayloadShape)
	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "d1", Handler: "donor.donate", Key: "alice", Payload: []byte(`{"amount_cents":500,"campaign":"water"}`)},
			{Id: "d2", Handler: "donor.donate", Key: "alice", Payload: []byte(`{"amount_cents":0,"campaign":"water"}`)},
			{Id: "d3", Handler: "donor.donate", Key: "alice", Payload: []byte(`{"amount_cents":250,"campaign":"water"}`)},
		},
	})
	for _, o := range resp.Outcomes {
		if o.Error != "" {
			fmt.Println(o.JobId, o.Status, o.Error)
			continue
		}
		fmt.Println(o.JobId, o.Status, string(o.State))
	}
	// Output:
	// donor.donate {"amount_cents":"integer","campaign":"string"}
	// d1 OK {"total_cents":500,"count":1}
	// d2 FAIL amount must be positive, got 0
	// d3 OK {"total_cents":750,"count":2}
}
