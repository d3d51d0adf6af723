package lease

import "errors"

var (
	// ErrFenced means a commit carried an epoch that is no longer current:
	// another worker was granted the partition since.
	ErrFenced = errors.New("fenced: partition epoch is stale")
	// ErrHeld means the partition is held by a worker whose lease is alive.
	ErrHeld = errors.New("partition is held by a live worker")
	// ErrLost means the worker's own lease expired in Redis before it was
	// renewed; every partition it believed it owned may have moved.
	ErrLost = errors.New("lease lost")
)
