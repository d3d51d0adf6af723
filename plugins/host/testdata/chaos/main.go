// Command chaos is a misbehaving plugin for the host tests. It implements
// the protocol by hand, without the SDK, so it can break it.
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

type chaos struct {
	pluginpb.UnimplementedHandlerServer
}

func (chaos) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	return &pluginpb.DescribeResponse{Name: "chaos", Version: "6.6.6", Handlers: []*pluginpb.HandlerSpec{
		{Name: "chaos.echo"},
		{Name: "chaos.badreply"},
		{Name: "chaos.hang", TimeoutMs: 300},
		{Name: "chaos.exit"},
	}}, nil
}

// echoResult tells the test what the plugin was sent.
type echoResult struct {
	Payload  json.RawMessage `json:"payload"`
	Entities []string        `json:"entities"`
	Pid      int             `json:"pid"`
}

func (chaos) Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	var ents []string
	for _, e := range req.GetEntities() {
		ents = append(ents, e.GetType()+"/"+e.GetKey())
	}
	resp := &pluginpb.HandleResponse{}
	for _, j := range req.GetJobs() {
		o := &pluginpb.Outcome{JobId: j.GetId(), Status: pluginpb.Outcome_OK}
		switch j.GetHandler() {
		case "chaos.echo":
			o.Result, _ = json.Marshal(echoResult{Payload: j.GetPayload(), Entities: ents, Pid: os.Getpid()})
		case "chaos.badreply":
			o.JobId = "not-" + j.GetId()
		case "chaos.hang":
			select {} // ignores ctx, like a handler stuck in a loop
		case "chaos.exit":
			os.Exit(3)
		}
		resp.Outcomes = append(resp.Outcomes, o)
	}
	return resp, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugins.Handshake,
		Plugins:         plugins.PluginSet(chaos{}),
		GRPCServer:      plugins.NewGRPCServer,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: "chaos", JSONFormat: true, Output: os.Stderr}),
	})
}
