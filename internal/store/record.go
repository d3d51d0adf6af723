package store

// A job's record (keys.Partition.Job) is a hash:
//
//	h  its content hash, written when it is submitted (an emitted job has
//	   none: its record is made by the commit that finishes it)
//	s  how it finished (statusDone, ...); none while it is not finished
//	f  when it finished, unix ms: the millisecond of the finished log's
//	   entry that names it, where its handler, key and submission time
//	   are (see finished_log.go)
//	a  attempts made, when not 1
//	e  how many jobs it emitted
//	r  its result
//	m  a rejected job's reason; a cancelled one's last error
//	n  its handler, k its key, t when it was submitted (unix ms): in a
//	   record finished by a release before the finished log kept them
//	   (its "f" is then the worker's clock, not a log entry's)
//
// Each value is kept short (a key is as long as the job's key), so Redis
// keeps the record in its compact encoding (hash-max-listpack-value, 64
// bytes by default).
