package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Job is one unit of work as it sits in a partition's stream, or delayed,
// parked or waiting behind its key's hold.
type Job struct {
	ID          string
	Handler     string
	Key         string
	Payload     []byte
	Attempt     int   // 1 on first delivery
	SubmittedAt int64 // unix milliseconds
	NotBefore   int64 // unix milliseconds; 0 = now
	MaxAttempts int   // submitter's override; 0 = the handler's
	TimeoutMs   int64 // submitter's override; 0 = the handler's
	Errors      []string
	Partition   int
	StreamID    string // set when read from a stream
	// WaitingSince is when an owner first found it could not run the job
	// (unix ms; it does not serve the handler): the job waits, parked,
	// without spending attempts, for an owner that does. 0: not waiting.
	WaitingSince int64
	// Trace is the W3C traceparent the job's spans descend from (for an
	// emitted job, the span its parent ran under, which they link to).
	// Empty when tracing is off: nothing of it is stored then.
	Trace string
}

// ContentHash identifies what a job does, so a resubmission of the same id
// can be told apart from a conflicting one. It covers handler, key and
// payload only: a relay's submission time or a resubmitted "--in 30s"
// (another not-before) is the same job.
func (j *Job) ContentHash() string {
	h := sha256.New()
	h.Write([]byte(j.Handler))
	h.Write([]byte{0})
	h.Write([]byte(j.Key))
	h.Write([]byte{0})
	h.Write(j.Payload)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// streamFields is the stream entry of a job: one field "j" holding the
// job in a compact binary form (see packJob). One field instead of one per
// attribute is less for Redis to parse, store, log to its AOF and reply.
func (j *Job) streamFields() []any {
	return []any{"j", packJob(j)}
}

// packJob encodes what a stream entry carries: a format byte, then id,
// handler, key and payload as length-prefixed bytes, then submitted-at,
// attempt, max attempts and timeout as varints, then the error history,
// then, only for a traced job, packedTrace and its traceparent: an
// untraced job is not one byte longer.
func packJob(j *Job) []byte {
	return appendPackedJob(make([]byte, 0, packedSize(j)), j)
}

// packedSize is at least the length of j packed.
func packedSize(j *Job) int {
	n := 1 + 5*binary.MaxVarintLen64 + len(j.ID) + len(j.Handler) + len(j.Key) + len(j.Payload) + 4*binary.MaxVarintLen64
	if j.Trace != "" {
		n += 1 + binary.MaxVarintLen64 + len(j.Trace)
	}
	for _, e := range j.Errors {
		n += binary.MaxVarintLen64 + len(e)
	}
	return n
}

// appendPackedJob appends j packed (see packJob) to b.
func appendPackedJob(b []byte, j *Job) []byte {
	b = append(b, packedJobV1)
	for _, f := range []string{j.ID, j.Handler, j.Key} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.AppendUvarint(b, uint64(len(j.Payload)))
	b = append(b, j.Payload...)
	b = binary.AppendVarint(b, j.SubmittedAt)
	b = binary.AppendVarint(b, int64(j.Attempt))
	b = binary.AppendVarint(b, int64(j.MaxAttempts))
	b = binary.AppendVarint(b, j.TimeoutMs)
	b = binary.AppendUvarint(b, uint64(len(j.Errors)))
	for _, e := range j.Errors {
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	if j.Trace != "" {
		b = append(b, packedTrace)
		b = binary.AppendUvarint(b, uint64(len(j.Trace)))
		b = append(b, j.Trace...)
	}
	return b
}

// packedJobV1 is the first byte of a packed job.
const packedJobV1 = 1

// packedTrace tags the optional traceparent after a packed job's errors.
const packedTrace = 't'

// errBadPackedJob means a stream entry's "j" field cannot be decoded.
var errBadPackedJob = errors.New("malformed packed job")

// unpackJob decodes packJob's output into j.
func unpackJob(b []byte, j *Job) error {
	if len(b) == 0 || b[0] != packedJobV1 {
		return errBadPackedJob
	}
	b = b[1:]
	bytesField := func() ([]byte, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return nil, false
		}
		f := b[n : n+int(l)]
		b = b[n+int(l):]
		return f, true
	}
	varint := func() (int64, bool) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	var strs [3]string
	for i := range strs {
		f, ok := bytesField()
		if !ok {
			return errBadPackedJob
		}
		strs[i] = string(f)
	}
	j.ID, j.Handler, j.Key = strs[0], strs[1], strs[2]
	p, ok := bytesField()
	if !ok {
		return errBadPackedJob
	}
	j.Payload = p
	var nums [4]int64
	for i := range nums {
		if nums[i], ok = varint(); !ok {
			return errBadPackedJob
		}
	}
	j.SubmittedAt, j.Attempt, j.MaxAttempts, j.TimeoutMs = nums[0], int(nums[1]), int(nums[2]), nums[3]
	ne, n := binary.Uvarint(b)
	if n <= 0 || ne > uint64(len(b)) {
		return errBadPackedJob
	}
	b = b[n:]
	for range ne {
		e, ok := bytesField()
		if !ok {
			return errBadPackedJob
		}
		j.Errors = append(j.Errors, string(e))
	}
	if len(b) > 0 {
		if b[0] != packedTrace {
			return errBadPackedJob
		}
		b = b[1:]
		t, ok := bytesField()
		if !ok {
			return errBadPackedJob
		}
		j.Trace = string(t)
	}
	return nil
}

// jobFromStream reads a stream entry: one packed job. An entry that cannot
// be decoded comes back without a handler, so the plugin call fails it and
// it is dead-lettered instead of blocking its partition.
func jobFromStream(partition int, id string, v map[string]any) Job {
	var j Job
	p, ok := v["j"].(string)
	if !ok {
		j = Job{ID: "bad-entry-" + id, Errors: []string{"stream entry holds no packed job"}}
	} else if err := unpackJob([]byte(p), &j); err != nil {
		j = Job{ID: "bad-entry-" + id, Errors: []string{err.Error()}}
	}
	j.Partition, j.StreamID = partition, id
	if j.Attempt < 1 {
		j.Attempt = 1
	}
	return j
}

// body is how a delayed, parked or waiting job is kept in the partition's
// bodies hash.
type body struct {
	ID          string   `json:"id"`
	Handler     string   `json:"h"`
	Key         string   `json:"k"`
	Payload     []byte   `json:"p"`
	Attempt     int      `json:"a"`
	SubmittedAt int64    `json:"t"`
	NotBefore   int64    `json:"n,omitempty"`
	MaxAttempts int      `json:"m,omitempty"`
	TimeoutMs   int64    `json:"o,omitempty"`
	Errors      []string `json:"e,omitempty"`
	Waiting     int64    `json:"w,omitempty"`
	Trace       string   `json:"tp,omitempty"`
}

func (j *Job) encode() string {
	b, _ := json.Marshal(body{ID: j.ID, Handler: j.Handler, Key: j.Key, Payload: j.Payload, Attempt: j.Attempt,
		SubmittedAt: j.SubmittedAt, NotBefore: j.NotBefore, MaxAttempts: j.MaxAttempts, TimeoutMs: j.TimeoutMs, Errors: j.Errors,
		Waiting: j.WaitingSince, Trace: j.Trace})
	return string(b)
}

func decodeJob(partition int, s string) (Job, error) {
	var b body
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		return Job{}, err
	}
	j := Job{ID: b.ID, Handler: b.Handler, Key: b.Key, Payload: b.Payload, Attempt: b.Attempt, SubmittedAt: b.SubmittedAt,
		NotBefore: b.NotBefore, MaxAttempts: b.MaxAttempts, TimeoutMs: b.TimeoutMs, Errors: b.Errors, Partition: partition,
		WaitingSince: b.Waiting, Trace: b.Trace}
	if j.Attempt < 1 {
		j.Attempt = 1
	}
	return j, nil
}

// EmitSep separates an emitted job's id from its parent's. User ids may
// not hold it, so no user id equals an emitted job's id, and as the number
// after it holds none either, the last one splits an id back into parent
// and number: one id, one (parent, n).
const EmitSep = '~'

// EmittedID is the id of the n-th job (from 0) that the job parent emits.
func EmittedID(parent string, n int) string {
	return parent + string(EmitSep) + strconv.Itoa(n)
}

// ParentID splits an emitted job's id into its parent's id and its number;
// ok is false for an id that was not derived by EmittedID.
func ParentID(id string) (parent string, n int, ok bool) {
	i := strings.LastIndexByte(id, EmitSep)
	if i <= 0 {
		return "", 0, false
	}
	num := id[i+1:]
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return "", 0, false
	}
	return id[:i], n, true
}
