// Package jobid makes the ids of jobs submitted without one, on the client
// and on the worker alike.
package jobid

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"
)

// New returns a random job id that sorts by creation time: now in
// microseconds (base 36), a dash, and 64 random bits in hex. It holds only
// characters a user id may hold, and never the separator of emitted ids.
func New(now time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return strconv.FormatInt(now.UnixMicro(), 36) + "-" + hex.EncodeToString(b[:])
}
