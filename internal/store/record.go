package store

import (
	"strconv"
	"strings"
)

// A job's record (keys.Partition.Job) is a hash:
//
//	h  its content hash, written when it is submitted (an emitted job has
//	   none: its record is made by the commit that finishes it)
//	s  how it finished, none while it is not finished: its status
//	   (statusDone, ...), then when it finished (unix ms), its attempts
//	   and how many jobs it emitted, "<status><ms> <attempts> <emitted>",
//	   in the one field the commit writes, by HSETNX, or by HSET with
//	   the answer after an HEXISTS (see recordStatus and unpackRecord).
//	   Its finish time is the millisecond of the finished log's entry
//	   that names it, where its handler, key and submission time are
//	   (see finished_log.go)
//	r  its result
//	m  a rejected job's reason; a cancelled one's last error
//
// A record finished by a release before has the status alone in "s" and
// the rest in fields of their own, read as they were:
//
//	f  when it finished, unix ms (the worker's clock)
//	a  attempts made, when not 1
//	e  how many jobs it emitted, when not 0
//	n  its handler, k its key, t when it was submitted (unix ms)
//
// Each value is kept short (a key is as long as the job's key), so Redis
// keeps the record in its compact encoding (hash-max-listpack-value, 64
// bytes by default).

// recordStatus is the status of a record's "s", packed or not: its first
// byte ("" for none).
func recordStatus(s string) string {
	if len(s) > 1 {
		return s[:1]
	}
	return s
}

// unpackRecord turns rec, a record as read by HGETALL, into the fields of
// a record of a release before: the status alone in "s", the finish time
// in "f", attempts in "a" and the emitted count in "e" ("e" left out when
// 0). A record in that form is left as it is.
func unpackRecord(rec map[string]string) {
	s := rec["s"]
	if len(s) <= 1 {
		return
	}
	f, rest, _ := strings.Cut(s[1:], " ")
	a, e, _ := strings.Cut(rest, " ")
	rec["s"], rec["f"], rec["a"] = s[:1], f, a
	if e != "" && e != "0" {
		rec["e"] = e
	}
}

// packedEmitted is how many jobs a record says its job emitted, from its
// "s" and "e" (either form).
func packedEmitted(s, e string) string {
	if len(s) > 1 {
		_, rest, _ := strings.Cut(s[1:], " ")
		_, e, _ = strings.Cut(rest, " ")
	}
	return e
}

// finishTail is what the commit's status carries after its finish time:
// " <attempts> <emitted>" (see the finish section of commitSections).
func finishTail(attempts, emitted int) string {
	b := make([]byte, 0, 8)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(attempts), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(emitted), 10)
	return string(b)
}
