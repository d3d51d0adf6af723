package worker

import (
	"context"
	"errors"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/jobid"
	"github.com/corralhq/corral/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits of an entity listing and delete.
const (
	defaultEntityPage = 1000
	maxEntityPage     = 10000
	defaultDeleteWait = 10 * time.Second
)

// checkEntityType refuses an entity type no handler reads and writes, as
// GetState does.
func (a *API) checkEntityType(entity string) error {
	if err := checkEntity(entity, a.intake.catalog.entities(a.intake.handlers())); err != nil {
		if entity == "" {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		return status.Error(codes.NotFound, err.Error())
	}
	return nil
}

// ListEntities pages through the keys of an entity type that have state
// (see store.ListEntities).
func (a *API) ListEntities(ctx context.Context, req *workerpb.ListEntitiesRequest) (*workerpb.ListEntitiesResponse, error) {
	if err := a.checkEntityType(req.Entity); err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	switch {
	case limit < 0 || limit > maxEntityPage:
		return nil, status.Errorf(codes.InvalidArgument, "limit %d: a page holds 1 to %d keys", limit, maxEntityPage)
	case limit == 0:
		limit = defaultEntityPage
	}
	ks, next, err := a.store.ListEntities(ctx, req.Entity, req.Prefix, req.After, limit)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	resp := &workerpb.ListEntitiesResponse{Keys: make([]*workerpb.EntityKey, len(ks)), Next: next}
	for i, k := range ks {
		resp.Keys[i] = &workerpb.EntityKey{Key: k.Key, Partition: int32(k.Partition)}
	}
	return resp, nil
}

// DeleteEntity deletes an entity's state with a job on its key's stream
// (store.DeleteHandler): the partition's owner applies it in its fenced
// commit, after the key's jobs submitted before it and before those
// submitted after. It waits up to wait_ms for that commit.
func (a *API) DeleteEntity(ctx context.Context, req *workerpb.DeleteEntityRequest) (*workerpb.DeleteEntityResponse, error) {
	if err := a.checkEntityType(req.Entity); err != nil {
		return nil, err
	}
	if err := validateKey(req.Key); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	now := time.Now()
	id := req.Id
	if id == "" {
		id = jobid.New(now)
	}
	if err := validateID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p := a.intake.partitionOf(req.Key)
	jobs := []store.Job{{ID: id, Handler: store.DeleteHandler, Key: req.Key,
		Payload: []byte(req.Entity), Attempt: 1, SubmittedAt: now.UnixMilli(), Partition: p}}
	enq, err := a.intake.enqueue(ctx, jobs)
	p = jobs[0].Partition
	if err != nil {
		if full := (*store.QueueFullError)(nil); errors.As(err, &full) {
			return nil, queueFullStatus(full)
		}
		return nil, status.Errorf(codes.Unavailable, "enqueue the delete: %v", err)
	}
	if r := enq[0]; r.Err != nil {
		if errors.Is(r.Err, store.ErrConflict) {
			return nil, status.Errorf(codes.AlreadyExists, "job id %s names another job: %v", id, r.Err)
		}
		return nil, status.Errorf(codes.Unavailable, "enqueue the delete: %v (send it again with the same id)", r.Err)
	}
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait <= 0 {
		wait = defaultDeleteWait
	}
	res, err := a.intake.results(ctx, []string{id}, []string{req.Key}, wait)
	if err != nil {
		return nil, err
	}
	return &workerpb.DeleteEntityResponse{Id: id, Partition: int32(p), State: res.Results[0].State}, nil
}
