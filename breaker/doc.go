// Package breaker guards calls to peers with one circuit breaker per peer
// (github.com/sony/gobreaker/v2) and a deadline on every call.
//
// A peer that keeps failing is not called for OpenTimeout; callers get
// ErrOpen at once and can take another path (another worker, the durable
// queue) instead of piling up behind a dead or stalled process.
package breaker
