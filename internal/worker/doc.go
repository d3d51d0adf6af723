// Package worker is the worker runtime: it turns membership into partition
// ownership (claims and releases under fencing epochs), runs the partitions
// it owns through the handler plugins, relays emitted jobs, keeps its Consul
// check honest, and serves the worker gRPC API.
package worker
