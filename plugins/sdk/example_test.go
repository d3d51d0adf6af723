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

// A plugin is a pluginpb.HandlerServer, so it runs in process too; main
// would call sdk.Serve(p) instead.
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
