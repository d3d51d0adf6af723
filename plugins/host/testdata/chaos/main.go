// Command chaos is a misbehaving plugin for the host tests. It implements
// the protocol by hand, without the SDK, so it can break it.
package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// version is set with -ldflags "-X main.version=..." to build an upgrade.
var version = "6.6.6"

type chaos struct {
	pluginpb.UnimplementedHandlerServer
}

func (chaos) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	return &pluginpb.DescribeResponse{Name: "chaos", Version: version, Handlers: []*pluginpb.HandlerSpec{
		{Name: "chaos.echo"},
		{Name: "chaos.badreply"},
		{Name: "chaos.hang", TimeoutMs: 300},
		{Name: "chaos.exit"},
		{Name: "chaos.slow"},
		{Name: "chaos.big"},
	}}, nil
}

// echoResult tells the test what the plugin was sent.
type echoResult struct {
	Payload  json.RawMessage `json:"payload"`
	Entities []string        `json:"entities"`
	Pid      int             `json:"pid"`
	Version  string          `json:"version"`
	Env      []string        `json:"env,omitempty"` // the plugin's environment
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
			o.Result, _ = json.Marshal(echoResult{Payload: j.GetPayload(), Entities: ents, Pid: os.Getpid(), Version: version, Env: os.Environ()})
		case "chaos.slow": // payload: milliseconds to take
			var ms int
			_ = json.Unmarshal(j.GetPayload(), &ms)
			time.Sleep(time.Duration(ms) * time.Millisecond)
			o.Result, _ = json.Marshal(echoResult{Pid: os.Getpid(), Version: version})
		case "chaos.big": // payload: size of the result in bytes
			var n int
			_ = json.Unmarshal(j.GetPayload(), &n)
			o.Result = []byte(strings.Repeat("x", n))
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
