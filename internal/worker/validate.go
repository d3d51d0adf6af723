package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/jsonscan"
	"github.com/corralhq/corral/internal/store"
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
	// ErrInternalHandler: the handler runs only jobs other handlers emit.
	ErrInternalHandler = errors.New("internal handler")
)

// internalHandlerError refuses a job submitted to an internal handler.
type internalHandlerError struct{ handler string }

func (e internalHandlerError) Error() string {
	return fmt.Sprintf("handler %s is internal: only other handlers may emit it", e.handler)
}

func (e internalHandlerError) Is(target error) bool { return target == ErrInternalHandler }

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
// safe in Redis keys, logs and shells. store.EmitSep is not among them: it
// is kept for the ids of emitted jobs.
func validateID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: id is %d bytes, the limit is %d", ErrInvalidID, len(id), MaxIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if !idByte[id[i]] {
			return badIDChar(id)
		}
	}
	return nil
}

// idByte marks the bytes an id may hold.
var idByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
	}
	return t
}()

// badIDChar names the first character of id that is not allowed.
func badIDChar(id string) error {
	for i, r := range id {
		if r >= utf8.RuneSelf || !idByte[r] {
			return fmt.Errorf("%w: character %q at byte %d; use letters, digits and . _ : / -", ErrInvalidID, r, i)
		}
	}
	return nil
}

func validatePayload(p []byte, max int) error {
	if len(p) > max {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrPayloadTooLarge, len(p), max)
	}
	if !jsonscan.Valid(p) {
		return errNotJSON
	}
	return nil
}

var errNotJSON = fmt.Errorf("%w: not a JSON document", ErrInvalidPayload)

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
	_, err := shapeOf(shape).check(payload)
	return err
}

// checkPayload is validatePayload and validateShape in one pass over the
// payload, with the same errors.
func checkPayload(p []byte, max int, shape *payloadShape) error {
	if len(p) > max {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrPayloadTooLarge, len(p), max)
	}
	if shape == nil {
		return validatePayload(p, max)
	}
	valid, err := shape.check(p)
	if !valid {
		return errNotJSON
	}
	return err
}

// payloadShape is a declared shape, parsed once: its fields sorted by name
// (so the first missing one reported is always the same) and their types.
type payloadShape struct {
	decl   string
	fields []string
	types  []string
}

// shapes caches parsed shapes by their declaration; handlers declare few.
var (
	shapes     sync.Map // declaration → *payloadShape (nil: accepts anything)
	shapeCount atomic.Int32
)

const maxCachedShapes = 1024

// shapeOf parses a shape declaration, or returns nil when it accepts
// anything.
func shapeOf(decl string) *payloadShape {
	if decl == "" {
		return nil
	}
	if v, ok := shapes.Load(decl); ok {
		return v.(*payloadShape)
	}
	var want map[string]string
	var sh *payloadShape
	if err := json.Unmarshal([]byte(decl), &want); err == nil && len(want) > 0 {
		sh = &payloadShape{decl: decl}
		for f := range want {
			sh.fields = append(sh.fields, f)
		}
		sort.Strings(sh.fields)
		for _, f := range sh.fields {
			sh.types = append(sh.types, want[f])
		}
	}
	if shapeCount.Load() < maxCachedShapes {
		if _, loaded := shapes.LoadOrStore(decl, sh); !loaded {
			shapeCount.Add(1)
		}
	}
	return sh
}

// check reports whether payload is valid JSON and, if it is, whether it
// has the shape. A nil shape accepts any valid payload.
func (s *payloadShape) check(payload []byte) (valid bool, err error) {
	if s == nil {
		return jsonscan.Valid(payload), nil
	}
	var small [8][]byte
	vals := small[:0]
	if len(s.fields) > len(small) {
		vals = make([][]byte, len(s.fields))
	} else {
		vals = small[:len(s.fields)]
	}
	valid, isObject := jsonscan.Object(payload, func(m jsonscan.Member) {
		key := m.Key
		if m.NeedsUnquote {
			var k string
			if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &k) != nil {
				return
			}
			key = []byte(k)
		}
		for i, f := range s.fields {
			if f == string(key) {
				vals[i] = m.Value // a repeated field: the last one counts, as in encoding/json
				break
			}
		}
	})
	if !valid {
		return false, fmt.Errorf("%w: want a JSON object with %s", ErrPayloadShape, s.decl)
	}
	if !isObject {
		return true, fmt.Errorf("%w: want a JSON object with %s", ErrPayloadShape, s.decl)
	}
	for i, f := range s.fields {
		if vals[i] == nil {
			return true, fmt.Errorf("%w: field %q is missing (want %s)", ErrPayloadShape, f, s.types[i])
		}
		if t := jsonType(vals[i]); !typeMatches(t, s.types[i]) {
			return true, fmt.Errorf("%w: field %q is %s, want %s", ErrPayloadShape, f, t, s.types[i])
		}
	}
	return true, nil
}

// jsonType names the JSON type of a valid JSON value.
func jsonType(raw []byte) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
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
	if bytes.ContainsAny(s, ".eE") {
		var f float64
		if json.Unmarshal(s, &f) == nil && f == float64(int64(f)) && !bytes.Contains(s, []byte(".")) {
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

// validateResultID accepts the ids a job may have: a user's id, or one
// derived from it for an emitted job (store.EmittedID), which only the
// cluster gives.
func validateResultID(id string) error {
	if len(id) > maxDerivedIDBytes {
		return fmt.Errorf("%w: id is %d bytes, the limit is %d", ErrInvalidID, len(id), maxDerivedIDBytes)
	}
	for {
		parent, _, ok := store.ParentID(id)
		if !ok {
			break
		}
		id = parent
	}
	if id == "" {
		return fmt.Errorf("%w: id is empty", ErrInvalidID)
	}
	return validateID(id)
}

// maxDerivedIDBytes bounds the id of an emitted job, emitted by emitted
// jobs, asked for by GetResult.
const maxDerivedIDBytes = 4 * MaxIDBytes
