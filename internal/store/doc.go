// Package store is all Redis access of the job path: per-partition job
// streams, idempotency records, entity state, results, the outbox, the
// dead-letter stream, and the fenced batch commit.
//
// Every key of a partition carries the hash tag {pN} (see internal/keys),
// so each script touches one Redis Cluster slot.
package store
