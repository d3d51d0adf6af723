package worker

import (
	"context"
	"github.com/corralhq/corral/internal/routing"
	"sync/atomic"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hostQueries answers handlers' read-only queries (pluginpb.Host) from
// committed state. It needs no owner: committed state is in Redis, and a
// query must not see another batch's uncommitted work anyway.
type hostQueries struct {
	pluginpb.UnimplementedHostServer
	store    *store.Store
	routes   *routing.Table
	entities atomic.Pointer[func() []string] // the cluster's entity types, once a Worker is given
}

// HostQueries is the query service a worker offers its plugins
// (plugins/host.Config.Host).
type HostQueries interface {
	pluginpb.HostServer
	// KnownEntities lists the entity types of the handlers of the
	// cluster's workers, once ServeEntitiesOf has named the worker: the
	// plugin host then lets a query for them through even when its own
	// plugins do not declare them (plugins/host.EntityLister).
	KnownEntities() []string
	// ServeEntitiesOf makes KnownEntities w's: its handlers' entity types
	// and those its members publish.
	ServeEntitiesOf(w *Worker)
}

// NewHostQueries returns the query service a worker offers its plugins
// (plugins/host.Config.Host).
func NewHostQueries(rdb redis.UniversalClient, routes *routing.Table) HostQueries {
	cfg := store.DefaultConfig()
	cfg.Routing = routes
	return &hostQueries{store: store.New(rdb, cfg), routes: routes}
}

func (h *hostQueries) KnownEntities() []string {
	if f := h.entities.Load(); f != nil {
		return (*f)()
	}
	return nil
}

func (h *hostQueries) ServeEntitiesOf(w *Worker) {
	f := w.entities
	h.entities.Store(&f)
}

// GetState reads one entity's committed state.
func (h *hostQueries) GetState(ctx context.Context, req *pluginpb.HostGetStateRequest) (*pluginpb.HostGetStateResponse, error) {
	if req.GetEntity() == "" {
		return nil, status.Error(codes.InvalidArgument, "query: entity type is empty")
	}
	if err := validateKey(req.GetKey()); err != nil {
		return nil, status.Error(codes.InvalidArgument, "query: "+err.Error())
	}
	routes := h.routes.Load()
	vals, err := h.store.States(ctx, req.GetEntity(), []string{req.GetKey()}, routes.PartitionOf)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "query: %v", err)
	}
	return &pluginpb.HostGetStateResponse{Found: vals[0] != nil, State: vals[0]}, nil
}
