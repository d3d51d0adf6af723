package store

import (
	"strconv"
	"strings"
)

// A job's record (keys.Partition.Job) is a hash:
//
//	h  the content hash (contentHashLen hex digits), then the job's meta
//	   (see recordHash): written at submission, or by the commit that
//	   finishes an emitted job, which has no record before
//	s  how it finished (statusDone, ...); none while it is not finished
//	f  when it finished, unix ms
//	a  attempts made, when not 1
//	e  jobs it emitted
//	r  its result
//	m  a rejected job's reason, a cancelled one's last error
//
// The meta rides in "h" so that a submission writes one field as before.

// contentHashLen is the length of a content hash (hex).
const contentHashLen = 32

// recordHash is a record's "h": the job's content hash, then when it was
// submitted, its handler's length, its handler and its key:
// "<hash><ms>:<len>:<handler><key>", so any key reads back whole.
func recordHash(hash string, j *Job) string {
	var b strings.Builder
	b.Grow(len(hash) + 24 + len(j.Handler) + len(j.Key))
	b.WriteString(hash)
	b.WriteString(strconv.FormatInt(j.SubmittedAt, 10))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(len(j.Handler)))
	b.WriteByte(':')
	b.WriteString(j.Handler)
	b.WriteString(j.Key)
	return b.String()
}

// recordMeta is what a record's "h" tells of its job besides its content.
type recordMeta struct {
	SubmittedAt  int64
	Handler, Key string
}

// parseRecordHash reads recordHash's output; ok is false for a record
// without meta.
func parseRecordHash(h string) (m recordMeta, ok bool) {
	if len(h) <= contentHashLen {
		return m, false
	}
	rest := h[contentHashLen:]
	ms, rest, ok1 := strings.Cut(rest, ":")
	n, rest, ok2 := strings.Cut(rest, ":")
	at, err1 := strconv.ParseInt(ms, 10, 64)
	hl, err2 := strconv.Atoi(n)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || hl < 0 || hl > len(rest) {
		return m, false
	}
	return recordMeta{SubmittedAt: at, Handler: rest[:hl], Key: rest[hl:]}, true
}

// RecordHashOf is the record "h" of job j: what the commit that finishes
// an emitted job, which has no record before, writes (see Batch.Records).
func RecordHashOf(j Job) string { return recordHash(j.ContentHash(), &j) }
