package sdk_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type posted struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

// Publish sends a message to a topic's subscribers (coordinator watch
// TOPIC, the Go client's Subscribe) once the job commits. A job that
// returns an error publishes nothing, so a retried attempt's messages never
// reach a subscriber.
func ExampleCall_Publish() {
	post := func(c *sdk.Call) error {
		var p struct {
			Text string `json:"text"`
		}
		if err := c.Decode(&p); err != nil {
			return err
		}
		if err := c.Publish("chat."+c.Key(), posted{Room: c.Key(), Text: p.Text}); err != nil {
			return err
		}
		if p.Text == "" {
			return errors.New("empty post") // a retry: its message is dropped
		}
		return nil
	}
	p := sdk.New("chat", "1.0.0", sdk.Handler("room.post", post))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "m1", Handler: "room.post", Key: "lobby", Payload: []byte(`{"text":"hi"}`), Attempt: 1},
			{Id: "m2", Handler: "room.post", Key: "lobby", Payload: []byte(`{"text":""}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		fmt.Println(o.JobId, o.Status, len(o.Publications), "message(s)")
		for _, m := range o.Publications {
			fmt.Println(" ", m.Topic, string(m.Message))
		}
	}
	// Output:
	// m1 OK 1 message(s)
	//   chat.lobby {"room":"lobby","text":"hi"}
	// m2 RETRY 0 message(s)
}
