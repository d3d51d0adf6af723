package ui

import (
	"context"

	"github.com/corralhq/corral/api/workerpb"
)

// Source is what the dashboard reads; the worker implements it.
type Source interface {
	// Status asks every healthy member for its status (the Status RPC with
	// cluster set).
	Status(ctx context.Context) (*workerpb.StatusResponse, error)
	// Holders names, per partition (index = partition), the worker holding
	// its claim in Redis and the owner this worker's ring names, as Locate
	// does for a key.
	Holders(ctx context.Context) ([]Holder, error)
	// DeadLetters pages through the dead letters, oldest first; after is
	// the cursor a previous page returned, "" at the start and the end.
	DeadLetters(ctx context.Context, limit int, after string) ([]DeadLetter, string, error)
	// DeadLetter reads one dead letter; nil when there is none.
	DeadLetter(ctx context.Context, id string) (*DeadLetter, error)
	// ReplayDead and PurgeDead are the dlq replay and purge of ids; they
	// return how many there were.
	ReplayDead(ctx context.Context, ids []string) (int, error)
	PurgeDead(ctx context.Context, ids []string) (int, error)
	// ListJobs and GetJobs are the ListJobs and GetJobs RPCs.
	ListJobs(ctx context.Context, req *workerpb.ListJobsRequest) (*workerpb.ListJobsResponse, error)
	GetJobs(ctx context.Context, ids []string) ([]*workerpb.JobInfo, error)
	// Emitted are the known jobs that job id emitted, in order.
	Emitted(ctx context.Context, id string) ([]*workerpb.JobInfo, error)
}

// Holder is one partition's claim.
type Holder struct {
	Owner     string `json:"owner"`      // "" when free
	RingOwner string `json:"ring_owner"` // differs from Owner while the partition moves
	Epoch     int64  `json:"epoch"`
}

// DeadLetter is one dead-lettered job as the page lists it.
type DeadLetter struct {
	ID        string   `json:"id"`
	Handler   string   `json:"handler"`
	Key       string   `json:"key"`
	Partition int      `json:"partition"`
	Attempts  int      `json:"attempts"`
	Errors    []string `json:"errors"`
	DeadAtMs  int64    `json:"dead_at_ms"`
	// PayloadBytes is the payload's size: the page shows keys and errors,
	// never job data.
	PayloadBytes int `json:"payload_bytes"`
}
