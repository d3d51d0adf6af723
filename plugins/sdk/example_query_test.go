package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type campaign struct {
	TotalCents int64 `json:"total_cents"`
}

type giver struct {
	TotalCents int64 `json:"total_cents"`
}

type shareQuery struct {
	Campaign string `json:"campaign"`
}

// share answers which part of a campaign's total the job's donor gave. The
// donor is the job's own entity (Load); the campaign is another entity,
// read with Query.
func share(c *sdk.Call) error {
	q, err := sdk.Payload[shareQuery](c)
	if err != nil {
		return err
	}
	var d giver
	if _, err := c.Load(&d); err != nil {
		return err
	}
	var camp campaign
	found, err := c.Query("campaign", q.Campaign, &camp)
	if err != nil {
		return err // retried: ErrNoHost, or the worker could not read it
	}
	if !found || camp.TotalCents == 0 {
		return c.SetResult(0.0)
	}
	return c.SetResult(float64(d.TotalCents) / float64(camp.TotalCents))
}

// Query needs the worker's query service. A Handle call made in process
// has none, so Query returns ErrNoHost and the job is retried rather than
// answered from a made-up state. (TestQueryInProcess in this package
// serves a fake query service, to test such a handler without a worker.)
func ExampleCall_Query() {
	var queryErr error
	p := sdk.New("donations", "1.0.0", sdk.Handler("donor.share", func(c *sdk.Call) error {
		queryErr = share(c)
		return queryErr
	}))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "donor", Key: "alice", State: []byte(`{"total_cents":2500}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "s1", Handler: "donor.share", Key: "alice", Payload: []byte(`{"campaign":"water"}`), Attempt: 1},
		},
	})
	fmt.Println(resp.Outcomes[0].Status, errors.Is(queryErr, sdk.ErrNoHost))
	// Output:
	// RETRY true
}

// fakeHost answers queries from a map, as the worker answers them from the
// committed states in Redis.
type fakeHost struct {
	pluginpb.UnimplementedHostServer
	states map[string]string // "entity/key" → JSON state
}

func (h fakeHost) GetState(_ context.Context, req *pluginpb.HostGetStateRequest) (*pluginpb.HostGetStateResponse, error) {
	s, ok := h.states[req.GetEntity()+"/"+req.GetKey()]
	return &pluginpb.HostGetStateResponse{Found: ok, State: []byte(s)}, nil
}

// TestQueryInProcess tests a handler that queries, without a worker: the
// plugin is served over go-plugin's in-process gRPC connection, with a
// fake query service offered to it through go-plugin's broker, as the
// worker offers its own. The request carries the broker id of that
// service, as every request from a worker does.
func TestQueryInProcess(t *testing.T) {
	t.Parallel()
	p := sdk.New("donations", "test", sdk.Handler("donor.share", share))
	host := fakeHost{states: map[string]string{"campaign/water": `{"total_cents":10000}`}}
	set := plugin.PluginSet{plugins.PluginName: &plugins.GRPCPlugin{Impl: p, Host: host}}
	client, server := plugin.TestPluginGRPCConn(t, false, set)
	defer client.Close()
	defer server.Stop()
	raw, err := client.Dispense(plugins.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	conn := raw.(*plugins.Conn) // the host's side: the Handler client and the query service's broker id

	resp, err := conn.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "donor", Key: "alice", State: []byte(`{"total_cents":2500}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "s1", Handler: "donor.share", Key: "alice", Payload: []byte(`{"campaign":"water"}`), Attempt: 1},
			{Id: "s2", Handler: "donor.share", Key: "alice", Payload: []byte(`{"campaign":"food"}`), Attempt: 1},
		},
		HostServiceId: conn.HostServiceID,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"0.25", "0"} {
		o := resp.GetOutcomes()[i]
		if o.GetStatus() != pluginpb.Outcome_OK || string(o.GetResult()) != want {
			t.Errorf("job %s: %v %s (%s), want OK %s", o.GetJobId(), o.GetStatus(), o.GetResult(), o.GetError(), want)
		}
	}
}
