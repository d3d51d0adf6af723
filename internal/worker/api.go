package worker

import (
	"context"
	"sort"
	"sync"

	"github.com/corralhq/corral/api/workerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// API serves the worker gRPC service.
type API struct {
	workerpb.UnimplementedWorkerServer
	w *Worker
}

// API returns the gRPC service of this worker.
func (w *Worker) API() *API { return &API{w: w} }

// GetState reads committed entity states.
func (a *API) GetState(ctx context.Context, req *workerpb.GetStateRequest) (*workerpb.GetStateResponse, error) {
	if req.Entity == "" {
		return nil, status.Error(codes.InvalidArgument, "entity type is empty")
	}
	for _, k := range req.Keys {
		if err := validateKey(k); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	vals, err := a.w.store.States(ctx, req.Entity, req.Keys, a.w.partitionOf)
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
// is set (through the per-peer breakers, so a dead peer answers fast).
func (a *API) Status(ctx context.Context, req *workerpb.StatusRequest) (*workerpb.StatusResponse, error) {
	w := a.w
	resp := &workerpb.StatusResponse{Partitions: int32(w.cfg.Ring.Partitions)}
	if !req.Cluster {
		ms, err := w.memberStatus(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		resp.Members = []*workerpb.MemberStatus{ms}
		return resp, nil
	}
	members, err := w.registry.Healthy(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list members: %v", err)
	}
	all := make([]int, w.cfg.Ring.Partitions)
	for p := range all {
		all[p] = p
	}
	depth, err := w.store.Depth(ctx, all)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	for _, d := range depth {
		resp.TotalDepth += d
	}
	resp.Members = make([]*workerpb.MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := &workerpb.MemberStatus{Id: m.ID, Address: m.Address}
			err := w.peers.Call(ctx, m.Address, func(ctx context.Context, c workerpb.WorkerClient) error {
				r, err := c.Status(ctx, &workerpb.StatusRequest{})
				if err == nil && len(r.Members) == 1 {
					ms = r.Members[0]
					ms.Address = m.Address
				}
				return err
			})
			if err != nil {
				ms.Error = err.Error()
			}
			resp.Members[i] = ms
		}()
	}
	wg.Wait()
	return resp, nil
}

func (w *Worker) memberStatus(ctx context.Context) (*workerpb.MemberStatus, error) {
	owned := w.grants.snapshot()
	parts := make([]int, 0, len(owned))
	for p := range owned {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	depth, err := w.store.Depth(ctx, parts)
	if err != nil {
		return nil, err
	}
	ms := &workerpb.MemberStatus{Id: w.cfg.ID, Address: w.cfg.Advertise, Plugins: w.handlers.Plugins(),
		Committed: w.exec.committed.Load(), Fenced: w.exec.fenced.Load(), Breakers: w.breakerStates()}
	ms.Draining = w.own.draining.Load()
	ms.LeaseRemainingMs = max(w.keeper.Remaining(), 0).Milliseconds()
	if d, ok := w.handlers.(interface{ Degraded() (bool, string) }); ok {
		ms.Degraded, _ = d.Degraded()
	}
	if r, ok := w.handlers.(interface{ Restarts() int64 }); ok {
		ms.PluginRestarts = r.Restarts()
	}
	ms.PluginInfo = pluginInfo(w.handlers)
	for _, p := range parts {
		ms.Partitions = append(ms.Partitions, &workerpb.PartitionStatus{Partition: int32(p), Epoch: owned[p].Epoch, Depth: depth[p]})
	}
	return ms, nil
}
