package sdk_test

import (
	"context"
	"fmt"
	"time"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

// Broadcast declares a handler that coordinator broadcast runs once on
// every worker of a group, with no state: here, it drops the entries of a
// process-local cache and replies how many it dropped. The worker sends
// one job with the broadcast's id and no key.
func ExampleBroadcast() {
	cache := map[string]int{"price:apple": 1, "price:pear": 2, "stock:apple": 7}
	invalidate := func(c *sdk.Call) error {
		var in struct {
			Prefix string `json:"prefix"`
		}
		if err := c.Decode(&in); err != nil {
			return err
		}
		n := 0
		for k := range cache {
			if len(k) >= len(in.Prefix) && k[:len(in.Prefix)] == in.Prefix {
				delete(cache, k)
				n++
			}
		}
		return c.SetResult(map[string]int{"dropped": n})
	}
	p := sdk.New("caches", "1.0.0", sdk.Handler("cache.invalidate", invalidate, sdk.Broadcast()))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Println(desc.Handlers[0].Name, "broadcast", desc.Handlers[0].Broadcast)
	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{
		{Id: "inv-42", Handler: "cache.invalidate", Payload: []byte(`{"prefix":"price:"}`), Attempt: 1},
	}})
	fmt.Println(resp.Outcomes[0].Status, string(resp.Outcomes[0].Result), len(cache))
	// Output:
	// cache.invalidate broadcast true
	// OK {"dropped":2} 1
}

type pageVisit struct {
	Page string `json:"page"`
}

type webSession struct {
	Visits int `json:"visits"`
}

// StateTTL makes an entity's state expire after a period without jobs:
// each commit of a session.visit job sets the session's time to live to
// 30 minutes again, and a session nobody visits for that long is gone.
func ExampleStateTTL() {
	seen := sdk.Typed(func(c *sdk.Call, _ pageVisit, s webSession) (webSession, error) {
		s.Visits++
		return s, nil
	})
	p := sdk.New("sessions", "1.0.0", sdk.Handler("session.visit", seen, sdk.StateTTL(30*time.Minute)))
	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Println(desc.Handlers[0].Name, "state TTL", time.Duration(desc.Handlers[0].StateTtlMs)*time.Millisecond)
	// Output:
	// session.visit state TTL 30m0s
}
