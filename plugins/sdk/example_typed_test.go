package sdk_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type rename struct {
	Name string `json:"name"`
}

type profile struct {
	Name    string `json:"name"`
	Renames int    `json:"renames"`
}

// Payload and State decode into a new value of the type asked for. A
// payload that does not decode is already a Fail error: the job is
// dead-lettered, not retried.
func ExamplePayload() {
	setName := func(c *sdk.Call) error {
		in, err := sdk.Payload[rename](c)
		if err != nil {
			return err // a Fail error: dead-lettered
		}
		s, err := sdk.State[profile](c) // the zero profile for a new user
		if err != nil {
			return err // retried
		}
		s.Name = in.Name
		s.Renames++
		return c.Save(s)
	}
	p := sdk.New("users", "1.0.0", sdk.Handler("user.rename", setName))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "n1", Handler: "user.rename", Key: "u1", Payload: []byte(`{"name":"Ada"}`), Attempt: 1},
			{Id: "n2", Handler: "user.rename", Key: "u1", Payload: nil, Attempt: 1},
			{Id: "n3", Handler: "user.rename", Key: "u1", Payload: []byte(`{"name":"Ada L."}`), Attempt: 1},
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
	// n1 OK {"name":"Ada","renames":1}
	// n2 FAIL decode user.rename payload: payload is empty
	// n3 OK {"name":"Ada L.","renames":2}
}

// State reads the state into a value of the type asked for, the zero value
// when the entity has none: a read-only handler that answers with it.
func ExampleState() {
	get := func(c *sdk.Call) error {
		s, err := sdk.State[profile](c)
		if err != nil {
			return err
		}
		return c.SetResult(s)
	}
	p := sdk.New("users", "1.0.0", sdk.Handler("user.get", get))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "user", Key: "u1", State: []byte(`{"name":"Ada","renames":1}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "g1", Handler: "user.get", Key: "u1", Payload: []byte(`{}`), Attempt: 1},
			{Id: "g2", Handler: "user.get", Key: "u2", Payload: []byte(`{}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		fmt.Println(o.JobId, o.Status, string(o.Result), o.StateChanged)
	}
	// Output:
	// g1 OK {"name":"Ada","renames":1} false
	// g2 OK {"name":"","renames":0} false
}
