package peer

import (
	"context"
	"errors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFault: only errors about the peer (down, slow, overloaded) count
// against it; answers about the request do not.
func TestFault(t *testing.T) {
	t.Parallel()
	peerFaults := []error{
		status.Error(codes.Unavailable, "down"),
		status.Error(codes.DeadlineExceeded, "slow"),
		status.Error(codes.ResourceExhausted, "overloaded"),
		status.Error(codes.Internal, "broken"),
		context.DeadlineExceeded,
		errors.New("dial refused"),
	}
	requestFaults := []error{
		nil,
		status.Error(codes.InvalidArgument, "bad payload"),
		status.Error(codes.NotFound, "no such job"),
		status.Error(codes.FailedPrecondition, "not the owner"),
		status.Error(codes.Canceled, "caller gave up"),
		queueFull(),
	}
	for _, err := range peerFaults {
		if !Fault(err) {
			t.Errorf("Fault(%v) = false, want true", err)
		}
	}
	for _, err := range requestFaults {
		if Fault(err) {
			t.Errorf("Fault(%v) = true, want false", err)
		}
	}
}

// queueFull is a worker's refusal for a full queue.
func queueFull() error {
	st, _ := status.New(codes.ResourceExhausted, "queue full").WithDetails(&errdetails.ErrorInfo{Reason: QueueFullReason})
	return st.Err()
}
