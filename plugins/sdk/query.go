package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// ErrNoHost means the worker offers no Host service to this plugin (an
// older worker, or a test calling Handle directly), so Query cannot work.
var ErrNoHost = errors.New("sdk: the host offers no query service")

// hostConns dials the host's Host service through go-plugin's broker, once
// per broker id.
type hostConns struct {
	mu      sync.Mutex
	broker  *plugin.GRPCBroker
	clients map[uint32]pluginpb.HostClient
}

var _ plugins.BrokerUser = (*Plugin)(nil)

// SetBroker is called by the plugin server with go-plugin's broker.
func (p *Plugin) SetBroker(b *plugin.GRPCBroker) {
	p.host.mu.Lock()
	defer p.host.mu.Unlock()
	p.host.broker = b
}

func (h *hostConns) client(id uint32) (pluginpb.HostClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id == 0 || h.broker == nil {
		return nil, ErrNoHost
	}
	if c, ok := h.clients[id]; ok {
		return c, nil
	}
	conn, err := h.broker.Dial(id)
	if err != nil {
		return nil, fmt.Errorf("sdk: dial the host's query service: %w", err)
	}
	if h.clients == nil {
		h.clients = map[uint32]pluginpb.HostClient{}
	}
	c := pluginpb.NewHostClient(conn)
	h.clients[id] = c
	return c, nil
}

// Query reads the committed state of another entity (or of this one, as it
// was before the batch) into v, under the job's deadline. It is read-only
// and sees committed state only; found is false when the entity has none.
// An error returned as is makes the job retry.
func (c *Call) Query(entity, key string, v any) (found bool, err error) {
	if c.host == nil {
		return false, ErrNoHost
	}
	hc, err := c.host()
	if err != nil {
		return false, err
	}
	resp, err := hc.GetState(c.ctx, &pluginpb.HostGetStateRequest{Entity: entity, Key: key})
	if err != nil {
		return false, fmt.Errorf("sdk: query %s %q: %w", entity, key, err)
	}
	if !resp.GetFound() {
		return false, nil
	}
	if err := json.Unmarshal(resp.GetState(), v); err != nil {
		return true, fmt.Errorf("sdk: query %s %q: state is not valid JSON for %T: %w", entity, key, v, err)
	}
	return true, nil
}
