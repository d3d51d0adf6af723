package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/jsonscan"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
)

// Limits of submitted jobs.
const (
	MaxKeyBytes = 1024
	MaxIDBytes  = 200
)

// Reasons a submitted job is rejected; nothing is written for it.
var (
	ErrUnknownHandler = errors.New("unknown handler")
	// ErrHandlerNotServed: the worker that owns the job's key does not
	// serve its handler (workers run different plugin sets).
	ErrHandlerNotServed = errors.New("handler not served by its key's owner")
	ErrInvalidKey       = errors.New("invalid key")
	ErrInvalidID        = errors.New("invalid job id")
	ErrInvalidPayload   = errors.New("invalid payload")
	ErrPayloadTooLarge  = errors.New("payload too large")
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

// shapeDecl is a handler's declaration of its payload, as the plugin host
// reports it: required fields and optional fields, each a JSON object
// mapping field names to JSON types, and whether no other field may come.
type shapeDecl struct {
	required, optional string
	closed             bool
}

// declOf is the shape h declares.
func declOf(h host.HandlerInfo) shapeDecl {
	return shapeDecl{required: h.PayloadShape, optional: h.PayloadOptional, closed: h.PayloadClosed}
}

// validateShape checks payload against a declared shape. A declaration
// that is not such an object declares nothing (the plugin host reports
// bad declarations); one that declares nothing accepts anything.
func validateShape(payload []byte, d shapeDecl) error {
	_, err := shapeOf(d).check(payload)
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
// (so the first missing one reported is always the same), their types and
// whether each is required.
type payloadShape struct {
	decl     string // the required fields' declaration, for messages
	fields   []string
	types    []string
	required []bool
	closed   bool
}

// shapes caches parsed shapes by their declaration; handlers declare few.
var (
	shapes     sync.Map // shapeDecl → *payloadShape (nil: accepts anything)
	shapeCount atomic.Int32
)

const maxCachedShapes = 1024

// shapeOf parses a shape declaration, or returns nil when it accepts
// anything.
func shapeOf(d shapeDecl) *payloadShape {
	if d == (shapeDecl{}) {
		return nil
	}
	if v, ok := shapes.Load(d); ok {
		return v.(*payloadShape)
	}
	var required, optional map[string]string
	if json.Unmarshal([]byte(d.required), &required) != nil {
		required = nil
	}
	if json.Unmarshal([]byte(d.optional), &optional) != nil {
		optional = nil
	}
	var sh *payloadShape
	if len(required) > 0 || len(optional) > 0 || d.closed {
		sh = &payloadShape{decl: d.required, closed: d.closed}
		if len(required) == 0 {
			sh.decl = "{}"
		}
		for f := range required {
			sh.fields = append(sh.fields, f)
		}
		for f := range optional {
			if _, dup := required[f]; !dup {
				sh.fields = append(sh.fields, f)
			}
		}
		sort.Strings(sh.fields)
		for _, f := range sh.fields {
			typ, req := required[f]
			if !req {
				typ = optional[f]
			}
			sh.types = append(sh.types, typ)
			sh.required = append(sh.required, req)
		}
	}
	if shapeCount.Load() < maxCachedShapes {
		if _, loaded := shapes.LoadOrStore(d, sh); !loaded {
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
	var unknown []byte // the first field the shape does not name, when closed
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
				return
			}
		}
		if s.closed && unknown == nil {
			unknown = key
		}
	})
	if !valid {
		return false, fmt.Errorf("%w: want a JSON object with %s", ErrPayloadShape, s.decl)
	}
	if !isObject {
		return true, fmt.Errorf("%w: want a JSON object with %s", ErrPayloadShape, s.decl)
	}
	for i, f := range s.fields {
		switch {
		case vals[i] == nil && s.required[i] && unknown != nil:
			// Most likely misspelled: say both.
			return true, fmt.Errorf("%w: field %q is missing (want %s), and field %q is not one the handler takes",
				ErrPayloadShape, f, s.types[i], unknown)
		case vals[i] == nil && s.required[i]:
			return true, fmt.Errorf("%w: field %q is missing (want %s)", ErrPayloadShape, f, s.types[i])
		case vals[i] == nil, !s.required[i] && string(vals[i]) == "null":
			continue // an optional field may be absent, or null for absent
		}
		if !typeMatches(jsonType(vals[i]), s.types[i]) {
			return true, fmt.Errorf("%w: field %q is %s; want %s", ErrPayloadShape, f, describe(vals[i]), s.types[i])
		}
	}
	if unknown != nil {
		return true, fmt.Errorf("%w: field %q is not one the handler takes (it takes: %s)", ErrPayloadShape, unknown, strings.Join(s.fields, ", "))
	}
	return true, nil
}

// jsonType names the JSON type of a valid JSON value as a shape does. A
// number is "integer" when it is written without a fraction or an exponent
// and fits an int64, else "number" when it fits a float64, else "" (it
// matches no type): what encoding/json decodes into an int64 and a
// float64, so a payload the shape accepts decodes in a Go handler.
func jsonType(raw []byte) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return ""
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
	exp := bytes.ContainsAny(s, "eE")
	switch {
	case !exp && bytes.IndexByte(s, '.') < 0 && fitsInt64(s):
		return "integer"
	case !exp && len(s) <= 300, fitsFloat64(s):
		return "number" // 300 digits are far inside float64's range
	}
	return ""
}

// fitsInt64 reports whether s, a JSON number without a fraction or an
// exponent (so without leading zeros), is within the int64 range.
func fitsInt64(s []byte) bool {
	limit := "9223372036854775807"
	if s[0] == '-' {
		s, limit = s[1:], "9223372036854775808"
	}
	return len(s) < len(limit) || len(s) == len(limit) && string(s) <= limit
}

// fitsFloat64 reports whether the JSON number s is within the float64
// range, as encoding/json decides it.
func fitsFloat64(s []byte) bool {
	_, err := strconv.ParseFloat(string(s), 64)
	return err == nil
}

// typeMatches says whether a value of JSON type got (jsonType) fits the
// type a shape wants: the same, an integer where a number will do, or
// anything where "any" will.
func typeMatches(got, want string) bool {
	return want == "any" || got != "" && (got == want || want == "number" && got == "integer")
}

// describe says what a value is for an error message, e.g. `1e3, a
// number with a fraction or an exponent`.
func describe(raw []byte) string {
	s := bytes.TrimSpace(raw)
	typ := jsonType(s)
	switch {
	case typ == "":
		return shown(s) + ", a number outside the float64 range"
	case typ == "number" && bytes.ContainsAny(s, ".eE"):
		return shown(s) + ", a number with a fraction or an exponent"
	case typ == "number":
		return shown(s) + ", a number outside the int64 range"
	case typ == "object" || typ == "array" || typ == "integer":
		return shown(s) + ", an " + typ
	}
	return shown(s) + ", a " + typ
}

// shown is a JSON value as an error message quotes it: cut after 40
// bytes.
func shown(v []byte) string {
	const max = 40
	if len(v) <= max {
		return string(v)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return string(v[:cut]) + "…"
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
	if schedule.IsTickBase(id) {
		return nil // a schedule's tick, or a job one emitted
	}
	if id == "" {
		return fmt.Errorf("%w: id is empty", ErrInvalidID)
	}
	return validateID(id)
}

// maxDerivedIDBytes bounds the id of an emitted job, emitted by emitted
// jobs, asked for by GetResult.
const maxDerivedIDBytes = 4 * MaxIDBytes
