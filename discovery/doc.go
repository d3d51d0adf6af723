// Package discovery tells workers who their healthy peers are.
//
// A worker registers itself in Consul as an instance of the service
// DefaultService ("corral-worker") with one TTL check. The check is driven
// by the worker's job loop through SetHealth, so an instance that answers
// but cannot work turns critical and leaves everyone's view. The output of
// every SetHealth is what an operator reads in the Consul UI.
//
// Everyone else watches the passing instances with Watch, which runs Consul
// blocking queries and emits a Snapshot only when the set of members (IDs,
// addresses, meta) changes. Every worker builds the same ring from the same
// snapshot; views may differ for moments, and safety never depends on them
// agreeing (that is the job of the fencing epochs in Redis).
//
// Static is an in-memory implementation of the same surface for unit tests.
package discovery
