package worker

import (
	"context"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/lease"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Locate says where keys live: their partition, the worker holding the
// partition's claim in Redis with its epoch, and the owner this worker's
// ring names (the two differ while a partition moves).
func (a *API) Locate(ctx context.Context, req *workerpb.LocateRequest) (*workerpb.LocateResponse, error) {
	w := a.w
	ring := w.view.current()
	resp := &workerpb.LocateResponse{Locations: make([]*workerpb.Location, len(req.Keys))}
	for i, k := range req.Keys {
		if err := validateKey(k); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		p := w.partitionOf(k)
		h, err := lease.HolderOf(ctx, w.rdb, p)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "locate %q: %v", k, err)
		}
		loc := &workerpb.Location{Key: k, Partition: int32(p), Epoch: h.Epoch, Owner: lease.WorkerID(h.Token)}
		loc.OwnerAddress = w.view.addressOf(loc.Owner)
		if ring != nil {
			loc.RingOwner = ring.OwnerOf(p)
		}
		resp.Locations[i] = loc
	}
	return resp, nil
}
