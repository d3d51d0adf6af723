package client

import (
	"errors"
	"strconv"

	"github.com/corralhq/corral/internal/peer"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrQueueFull means a Submit (or a Call's fallback to the queue) was
// refused because a partition's queue held as many jobs as its workers'
// --max-queue-depth allows, and kept being refused for RetryConfig.FullFor.
// Nothing was rejected: sending the same jobs again later adds each once.
var ErrQueueFull = errors.New("a partition's queue is full")

// QueueFull is what a worker said when it refused jobs for a full queue.
type QueueFull struct {
	Partition  int
	Depth, Max int64
}

// IsQueueFull reads a full queue's refusal from err: the partition and its
// depth. A ResourceExhausted of another kind (a message over gRPC's size
// limit) is not one.
func IsQueueFull(err error) (QueueFull, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		var w interface{ Unwrap() []error }
		if errors.As(err, &w) {
			for _, e := range w.Unwrap() {
				if q, ok := IsQueueFull(e); ok {
					return q, true
				}
			}
		}
		return QueueFull{}, false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == peer.QueueFullReason {
			p, _ := strconv.Atoi(info.Metadata["partition"])
			depth, _ := strconv.ParseInt(info.Metadata["depth"], 10, 64)
			limit, _ := strconv.ParseInt(info.Metadata["max"], 10, 64)
			return QueueFull{Partition: p, Depth: depth, Max: limit}, true
		}
	}
	return QueueFull{}, false
}
