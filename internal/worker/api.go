package worker

import (
	"context"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// API serves the worker gRPC service. Each RPC goes to the component that
// answers it: submits and results to the intake, calls to the router,
// status and locate to the reporter; the API itself reads states and dead
// letters from the store.
type API struct {
	workerpb.UnimplementedWorkerServer
	id     string
	store  *store.Store
	intake *jobIntake
	router *callRouter
	report *reporter
	reload func(ctx context.Context) (*workerpb.ReloadPluginsResponse, error)
	drain  func(ctx context.Context) int

	inspect *inspector   // lists and describes jobs
	cancel  *canceller   // cancels them
	flow    *flowControl // pause, resume and limits of handlers
	topics  *topicServer // subscriptions to published messages
	bcast   *broadcaster // runs broadcast handlers on group members
	reshard *resharder   // the partition layout and splits
}

// API returns the gRPC service of this worker.
func (w *Worker) API() *API { return w.api }

// entities lists the entity types the handlers of this worker and of the
// members that publish their handlers read and write, sorted.
func (w *Worker) entities() []string {
	return w.api.intake.catalog.entities(w.api.intake.handlers())
}

// GetState reads committed entity states. An entity type that no handler
// of this worker or of the members that publish their handlers reads and
// writes is refused (NotFound) with the known ones named.
func (a *API) GetState(ctx context.Context, req *workerpb.GetStateRequest) (*workerpb.GetStateResponse, error) {
	if err := checkEntity(req.Entity, a.intake.catalog.entities(a.intake.handlers())); err != nil {
		if req.Entity == "" {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Error(codes.NotFound, err.Error())
	}
	for _, k := range req.Keys {
		if err := validateKey(k); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	vals, err := a.store.States(ctx, req.Entity, req.Keys, a.intake.partitionOf)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	resp := &workerpb.GetStateResponse{States: make([]*workerpb.EntityState, len(req.Keys))}
	for i, k := range req.Keys {
		resp.States[i] = &workerpb.EntityState{Key: k, Found: vals[i] != nil, State: vals[i]}
	}
	return resp, nil
}

// Status describes this worker, or asks every healthy member when cluster
// is set.
func (a *API) Status(ctx context.Context, req *workerpb.StatusRequest) (*workerpb.StatusResponse, error) {
	if req.Cluster {
		resp, err := a.report.clusterStatus(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		return resp, nil
	}
	ms, err := a.report.memberStatus(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &workerpb.StatusResponse{Partitions: int32(a.report.cfg.routing().Partitions()), Members: []*workerpb.MemberStatus{ms}}, nil
}

// Locate says where keys live: their partition, the worker holding the
// partition's claim in Redis with its epoch, and the owner this worker's
// ring names (the two differ while a partition moves).
func (a *API) Locate(ctx context.Context, req *workerpb.LocateRequest) (*workerpb.LocateResponse, error) {
	locs, err := a.report.locate(ctx, req.Keys)
	if err != nil {
		return nil, err
	}
	return &workerpb.LocateResponse{Locations: locs}, nil
}

// ReloadPlugins relaunches this worker's plugins from their binaries, as
// SIGHUP does: batches in flight finish on the old processes, new batches
// go to the new ones. If a new binary fails to start (bad checksum, crash,
// dropped handler) nothing changes and the error says why. The response
// has the old and new version of every plugin when the handlers report
// them (plugins/host.Manager does).
func (a *API) ReloadPlugins(ctx context.Context, _ *workerpb.ReloadPluginsRequest) (*workerpb.ReloadPluginsResponse, error) {
	resp, err := a.reload(ctx)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "reload plugins on %s: %v", a.id, err)
	}
	return resp, nil
}

// Drain serves the Drain RPC.
func (a *API) Drain(ctx context.Context, _ *workerpb.DrainRequest) (*workerpb.DrainResponse, error) {
	return &workerpb.DrainResponse{Released: int32(a.drain(ctx))}, nil
}
