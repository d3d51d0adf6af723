// Package grpcopt holds the gRPC settings every Corral connection shares,
// between coordinator and workers, between workers, and between a worker
// and its plugins: the message limit, the flow-control window and the
// server's stream workers. They are defined here once.
package grpcopt

import "google.golang.org/grpc"

// MaxMessageBytes caps one gRPC message by default. gRPC's own default of
// 4 MiB is too small for a large batch of jobs with their entity states.
const MaxMessageBytes = 64 << 20

// WindowBytes is the HTTP/2 flow-control window of every connection. A
// fixed window turns off gRPC's bandwidth probing, which pings along with
// every small message; calls are small and latency is what counts.
const WindowBytes = 1 << 20

// StreamWorkers is how many goroutines a server keeps for incoming calls,
// instead of starting one per call (more are started when all are busy).
const StreamWorkers = 16

// ServerOptions set a server's message limit to limit bytes, its
// flow-control window and its stream workers.
func ServerOptions(limit int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(limit), grpc.MaxSendMsgSize(limit),
		grpc.InitialWindowSize(WindowBytes), grpc.InitialConnWindowSize(WindowBytes),
		grpc.NumStreamWorkers(StreamWorkers),
	}
}

// DialOptions set a client connection's message limit to limit bytes and
// its flow-control window.
func DialOptions(limit int) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit), grpc.MaxCallSendMsgSize(limit)),
		grpc.WithInitialWindowSize(WindowBytes), grpc.WithInitialConnWindowSize(WindowBytes),
	}
}
