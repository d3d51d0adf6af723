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

// ErrNoHost is Call.Query's error when the worker offers the plugin no
// query service: in a test that calls Plugin.Handle in process, or under a
// worker too old to offer one. Returned as is, it retries the job.
var ErrNoHost = errors.New("sdk: the host offers no query service")

// hostConns dials the host's Host service through go-plugin's broker, once
// per broker id.
type hostConns struct {
	mu      sync.Mutex
	broker  *plugin.GRPCBroker
	clients map[uint32]pluginpb.HostClient
}

var _ plugins.BrokerUser = (*Plugin)(nil)

// SetBroker is called by go-plugin's server as Serve starts, with the
// broker through which the plugin dials the worker's query service (see
// plugins.BrokerUser). Plugin code does not call it.
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

// Query unmarshals the committed state of the entity of type entity and
// key key into v: found is false, and v untouched, when that entity has
// no state. Use it to read an entity other than the job's own, which Load
// already gives:
//
//	var camp Campaign
//	if _, err := c.Query("campaign", q.Campaign, &camp); err != nil {
//		return err // retried
//	}
//
// Each Query is a round trip through the worker to Redis under
// c.Context(), so it takes time from the batch's deadline. It sees
// committed state only: never another batch's work in progress, nor this
// batch's (for the job's own entity it gives the state before the batch).
// What it read may change before the job commits, and the commit does not
// depend on it: to keep a rule that spans two entities, emit a job to the
// other entity and decide there.
//
// Its errors are not marked with Fail, so returned as is they retry the
// job: ErrNoHost when the worker offers no query service (see "Testing
// without a cluster" in the package documentation), a gRPC error when the
// query failed (an empty entity type, an invalid key, Redis unreachable),
// and a JSON error when the state does not unmarshal into v. An entity
// type that no handler of the cluster works on (by its name or its
// Entity) is refused with a NotFound error naming the ones that are: a
// misspelled type would otherwise read as "no state" for ever.
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
