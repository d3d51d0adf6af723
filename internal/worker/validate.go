package worker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits of submitted jobs.
const (
	MaxKeyBytes = 1024
	MaxIDBytes  = 200
)

// Reasons a submitted job is rejected; nothing is written for it.
var (
	ErrUnknownHandler  = errors.New("unknown handler")
	ErrInvalidKey      = errors.New("invalid key")
	ErrInvalidID       = errors.New("invalid job id")
	ErrInvalidPayload  = errors.New("invalid payload")
	ErrPayloadTooLarge = errors.New("payload too large")
)

func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: key is empty", ErrInvalidKey)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidKey)
	}
	return nil
}

// validateID accepts ids made of letters, digits and . _ : / - so they are
// safe in Redis keys, logs and shells.
func validateID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: id is %d bytes, the limit is %d", ErrInvalidID, len(id), MaxIDBytes)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '/' || r == '-'
		if !ok {
			return fmt.Errorf("%w: character %q at byte %d; use letters, digits and . _ : / -", ErrInvalidID, r, i)
		}
	}
	return nil
}

func validatePayload(p []byte, max int) error {
	if len(p) > max {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrPayloadTooLarge, len(p), max)
	}
	if !json.Valid(p) {
		return fmt.Errorf("%w: not a JSON document", ErrInvalidPayload)
	}
	return nil
}

// newJobID returns an id that sorts by submission time.
func newJobID(now time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return strconv.FormatInt(now.UnixMicro(), 36) + "-" + hex.EncodeToString(b[:])
}
