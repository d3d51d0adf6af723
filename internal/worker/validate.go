package worker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
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

// ErrPayloadShape means a payload does not have the shape its handler
// declared; ErrInvalidOption a submitter's override is out of its limits.
var (
	ErrPayloadShape  = errors.New("payload does not match the handler's shape")
	ErrInvalidOption = errors.New("invalid job option")
)

// validateShape checks payload against a handler's declared shape: a JSON
// object mapping each required field to its JSON type. An empty shape, or
// one that is not such an object, accepts anything (the plugin host
// reports bad declarations).
func validateShape(payload []byte, shape string) error {
	if shape == "" {
		return nil
	}
	var want map[string]string
	if err := json.Unmarshal([]byte(shape), &want); err != nil || len(want) == 0 {
		return nil
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(payload, &got); err != nil || got == nil {
		return fmt.Errorf("%w: want a JSON object with %s", ErrPayloadShape, shape)
	}
	fields := make([]string, 0, len(want))
	for f := range want {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		raw, ok := got[f]
		if !ok {
			return fmt.Errorf("%w: field %q is missing (want %s)", ErrPayloadShape, f, want[f])
		}
		if t := jsonType(raw); !typeMatches(t, want[f]) {
			return fmt.Errorf("%w: field %q is %s, want %s", ErrPayloadShape, f, t, want[f])
		}
	}
	return nil
}

// jsonType names the JSON type of a valid JSON value.
func jsonType(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "nothing"
	}
	switch s[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	if strings.ContainsAny(s, ".eE") {
		var f float64
		if json.Unmarshal(raw, &f) == nil && f == float64(int64(f)) && !strings.Contains(s, ".") {
			return "integer"
		}
		return "number"
	}
	return "integer"
}

func typeMatches(got, want string) bool {
	return got == want || want == "number" && got == "integer"
}

// validateOptions checks a submitter's overrides against their limits.
func validateOptions(maxAttempts int32, timeoutMs int64, limit int, handlerTimeout time.Duration) error {
	if maxAttempts < 0 || int(maxAttempts) > limit {
		return fmt.Errorf("%w: max attempts %d, allowed 1 to %d", ErrInvalidOption, maxAttempts, limit)
	}
	if timeoutMs < 0 {
		return fmt.Errorf("%w: negative timeout %dms", ErrInvalidOption, timeoutMs)
	}
	if handlerTimeout > 0 && time.Duration(timeoutMs)*time.Millisecond > handlerTimeout {
		return fmt.Errorf("%w: timeout %dms is over the handler's %v", ErrInvalidOption, timeoutMs, handlerTimeout)
	}
	return nil
}
