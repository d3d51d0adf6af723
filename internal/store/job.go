package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Job is one unit of work as it sits in a partition's stream.
type Job struct {
	ID          string
	Handler     string
	Key         string
	Payload     []byte
	Attempt     int   // 1 on first delivery
	SubmittedAt int64 // unix milliseconds
	Partition   int
	StreamID    string // set when read from a stream
}

// ContentHash identifies what a job does, so a resubmission of the same id
// can be told apart from a conflicting one.
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
	return []any{"id", j.ID, "h", j.Handler, "k", j.Key, "p", j.Payload,
		"t", strconv.FormatInt(j.SubmittedAt, 10), "a", strconv.Itoa(j.Attempt)}
}

func jobFromStream(partition int, id string, v map[string]any) Job {
	str := func(k string) string { s, _ := v[k].(string); return s }
	j := Job{ID: str("id"), Handler: str("h"), Key: str("k"), Payload: []byte(str("p")),
		Partition: partition, StreamID: id}
	j.SubmittedAt, _ = strconv.ParseInt(str("t"), 10, 64)
	j.Attempt, _ = strconv.Atoi(str("a"))
	if j.Attempt < 1 {
		j.Attempt = 1
	}
	return j
}
