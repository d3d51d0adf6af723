package keys

// FlowSettings holds the runtime flow settings of every handler: handler
// name → its pause and limits, as JSON. Workers poll it; it is not on the
// job path's scripts, so it needs no partition's hash tag.
const FlowSettings = "corral:flow"

// Handler builds the keys of one handler's cluster-wide flow control,
// all under the hash tag {f:NAME}, so each of its scripts touches one
// Redis Cluster slot.
type Handler struct{ prefix string }

// ForHandler returns the key builder of handler h.
func ForHandler(h string) Handler { return Handler{prefix: "corral:{f:" + h + "}:"} }

// Slots is the handler's concurrency semaphore: a sorted set of the slots
// held, scored by when each lease ends, so a dead worker's slots free
// themselves.
func (k Handler) Slots() string { return k.prefix + "slots" }

// Bucket is the handler's rate-limit token bucket: its tokens and when
// they were counted.
func (k Handler) Bucket() string { return k.prefix + "bucket" }
