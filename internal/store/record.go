package store

// A job's record (keys.Partition.Job) is a hash:
//
//	h  its content hash, written when it is submitted (an emitted job has
//	   none: its record is made by the commit that finishes it)
//	s  how it finished (statusDone, ...); none while it is not finished
//	f  when it finished, unix ms
//	n  its handler, k its key, t when it was submitted (unix ms): written
//	   when it finishes, for jobs list and jobs show
//	a  attempts made, when not 1
//	e  how many jobs it emitted
//	r  its result
//	m  a rejected job's reason; a cancelled one's last error
//
// Each value is kept short (a key is as long as the job's key), so Redis
// keeps the record in its compact encoding (hash-max-listpack-value, 64
// bytes by default).
