// Package client talks to a Corral cluster: it finds healthy workers in
// Consul and calls their gRPC API through per-peer circuit breakers.
// The coordinator CLI is built on it; Go programs can use it directly.
package client
