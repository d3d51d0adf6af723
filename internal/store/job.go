package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
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

// streamFields is the stream entry of a job.
func (j *Job) streamFields() []any {
	f := []any{"id", j.ID, "h", j.Handler, "k", j.Key, "p", j.Payload,
		"t", strconv.FormatInt(j.SubmittedAt, 10), "a", strconv.Itoa(j.Attempt)}
	if j.MaxAttempts > 0 {
		f = append(f, "m", strconv.Itoa(j.MaxAttempts))
	}
	if j.TimeoutMs > 0 {
		f = append(f, "o", strconv.FormatInt(j.TimeoutMs, 10))
	}
	if len(j.Errors) > 0 {
		e, _ := json.Marshal(j.Errors)
		f = append(f, "e", e)
	}
	return f
}

func jobFromStream(partition int, id string, v map[string]any) Job {
	str := func(k string) string { s, _ := v[k].(string); return s }
	j := Job{ID: str("id"), Handler: str("h"), Key: str("k"), Payload: []byte(str("p")),
		Partition: partition, StreamID: id}
	j.SubmittedAt, _ = strconv.ParseInt(str("t"), 10, 64)
	j.Attempt, _ = strconv.Atoi(str("a"))
	j.MaxAttempts, _ = strconv.Atoi(str("m"))
	j.TimeoutMs, _ = strconv.ParseInt(str("o"), 10, 64)
	if e := str("e"); e != "" {
		_ = json.Unmarshal([]byte(e), &j.Errors)
	}
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
}

func (j *Job) encode() string {
	b, _ := json.Marshal(body{ID: j.ID, Handler: j.Handler, Key: j.Key, Payload: j.Payload, Attempt: j.Attempt,
		SubmittedAt: j.SubmittedAt, NotBefore: j.NotBefore, MaxAttempts: j.MaxAttempts, TimeoutMs: j.TimeoutMs, Errors: j.Errors})
	return string(b)
}

func decodeJob(partition int, s string) (Job, error) {
	var b body
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		return Job{}, err
	}
	j := Job{ID: b.ID, Handler: b.Handler, Key: b.Key, Payload: b.Payload, Attempt: b.Attempt, SubmittedAt: b.SubmittedAt,
		NotBefore: b.NotBefore, MaxAttempts: b.MaxAttempts, TimeoutMs: b.TimeoutMs, Errors: b.Errors, Partition: partition}
	if j.Attempt < 1 {
		j.Attempt = 1
	}
	return j, nil
}
