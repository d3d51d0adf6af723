// Package lease keeps a worker's liveness lease in Redis and grants
// partition ownership with fencing epochs.
//
// A worker holds one lease key (renewal is O(1) per worker). A partition's
// owner key names the lease token of its holder; a claim succeeds only when
// the partition is free or its holder's lease is gone, and every grant
// increments the partition's epoch. Commits carry the epoch and are checked
// against it inside the same Lua script as the write, so safety never
// depends on workers agreeing about membership.
package lease
