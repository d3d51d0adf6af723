package sdk

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/jsonscan"
)

// Most payloads, states and results are flat structs of numbers, booleans
// and strings, which encoding/json reads and writes through reflection and
// a byte-at-a-time state machine. For such a struct (a flat type: a plain
// type, see plain.go, whose fields may also be strings) unmarshal and
// marshal take a shorter way to the very result encoding/json gives, and
// hand everything else to encoding/json: a document or a value they would
// have to read or write differently (an escape, bytes outside ASCII in a
// key, a number that does not fit, a value of another JSON type, NaN, a
// string with characters encoding/json escapes) goes to encoding/json
// whole, so its errors and its treatment of odd input are its own.

// flatField is one field of a flat type.
type flatField struct {
	name  string // its JSON name
	index int
	kind  reflect.Kind
	bits  int // of a number
}

var flatTypes sync.Map // reflect.Type → []flatField, nil when not flat

// flatFields is t's fields if t is a flat type, else nil.
func flatFields(t reflect.Type) []flatField {
	if f, ok := flatTypes.Load(t); ok {
		return f.([]flatField)
	}
	var fields []flatField
	if plainFields(t, true) {
		fields = make([]flatField, 0, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("json")
			if name == "" {
				name = f.Name
			}
			ff := flatField{name: name, index: i, kind: f.Type.Kind()}
			switch ff.kind {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
				reflect.Float32, reflect.Float64:
				ff.bits = f.Type.Bits()
			}
			fields = append(fields, ff)
		}
	}
	flatTypes.Store(t, fields)
	return fields
}

// unmarshal is json.Unmarshal(b, v).
func unmarshal(b []byte, v any) error {
	if unmarshalFlat(b, v) {
		return nil
	}
	return json.Unmarshal(b, v)
}

// marshal is json.Marshal(v).
func marshal(v any) ([]byte, error) {
	if b, ok := marshalFlat(v); ok {
		return b, nil
	}
	return json.Marshal(v)
}

// unmarshalFlat decodes b, a JSON object, into v, a non-nil pointer to a
// flat type, as json.Unmarshal would without an error, and says true;
// false, with v unchanged, when v is not such a pointer or b needs
// encoding/json (see above).
func unmarshalFlat(b []byte, v any) bool {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	fields := flatFields(rv.Type().Elem())
	if fields == nil {
		return false
	}
	// Fields the document leaves out keep their values, as with
	// encoding/json; v changes only if all of b decodes.
	out := reflect.New(rv.Type().Elem()).Elem()
	out.Set(rv.Elem())
	ok := true
	valid, isObject := jsonscan.Object(b, func(m jsonscan.Member) {
		if !ok {
			return
		}
		if m.NeedsUnquote {
			ok = false
			return
		}
		f := matchField(fields, m.Key)
		if f == nil {
			return // ignored, as encoding/json ignores an unknown field
		}
		ok = setFlat(out.Field(f.index), f, m.Value)
	})
	if !valid || !isObject || !ok {
		return false
	}
	rv.Elem().Set(out)
	return true
}

// matchField is the field key names: the one of that exact name, else the
// one whose name equals it but for ASCII case (a flat type's names differ
// in more than case, and key is ASCII), else nil.
func matchField(fields []flatField, key []byte) *flatField {
	for i := range fields {
		if fields[i].name == string(key) {
			return &fields[i]
		}
	}
	for i := range fields {
		if asciiEqualFold(fields[i].name, key) {
			return &fields[i]
		}
	}
	return nil
}

func asciiEqualFold(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := range len(s) {
		x, y := s[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// setFlat sets fv, field f, from the JSON value raw as encoding/json would,
// and says true; false when raw is not of f's JSON type, does not fit it or
// is a string that needs unquoting.
func setFlat(fv reflect.Value, f *flatField, raw []byte) bool {
	if string(raw) == "null" {
		return true // null leaves a field as it was
	}
	switch f.kind {
	case reflect.Bool:
		switch string(raw) {
		case "true":
			fv.SetBool(true)
		case "false":
			fv.SetBool(false)
		default:
			return false
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isNumber(raw) {
			return false
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || fv.OverflowInt(n) {
			return false
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !isNumber(raw) {
			return false
		}
		n, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || fv.OverflowUint(n) {
			return false
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		if !isNumber(raw) {
			return false
		}
		n, err := strconv.ParseFloat(string(raw), f.bits)
		if err != nil || fv.OverflowFloat(n) {
			return false
		}
		fv.SetFloat(n)
	case reflect.String:
		if len(raw) < 2 || raw[0] != '"' {
			return false
		}
		s := raw[1 : len(raw)-1]
		if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
			return false // escapes, or bytes encoding/json replaces
		}
		fv.SetString(string(s))
	default:
		return false
	}
	return true
}

// isNumber says whether raw, one valid JSON value, is a number.
func isNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9')
}

// marshalFlat is json.Marshal(v) for v a flat type or a non-nil pointer to
// one, and true; false when v is neither or holds a value encoding/json
// writes another way than the short one (NaN or an infinity, which it
// refuses; a string with characters it escapes).
func marshalFlat(v any) ([]byte, bool) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil, false
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return nil, false
	}
	fields := flatFields(rv.Type())
	if fields == nil {
		return nil, false
	}
	b := make([]byte, 0, 16*len(fields)+2)
	b = append(b, '{')
	for i := range fields {
		f := &fields[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.name...)
		b = append(b, '"', ':')
		fv := rv.Field(f.index)
		switch f.kind {
		case reflect.Bool:
			b = strconv.AppendBool(b, fv.Bool())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			b = strconv.AppendInt(b, fv.Int(), 10)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			b = strconv.AppendUint(b, fv.Uint(), 10)
		case reflect.Float32, reflect.Float64:
			var ok bool
			if b, ok = appendFloat(b, fv.Float(), f.bits); !ok {
				return nil, false
			}
		case reflect.String:
			s := fv.String()
			if !plainString(s) {
				return nil, false
			}
			b = append(b, '"')
			b = append(b, s...)
			b = append(b, '"')
		default:
			return nil, false
		}
	}
	return append(b, '}'), true
}

// appendFloat appends f as encoding/json writes a float of bits bits: the
// shortest decimal that reads back as f, in exponent form below 1e-6 and
// from 1e21 on, with the exponent's leading zero dropped. NaN and the
// infinities are refused, as encoding/json refuses them.
func appendFloat(b []byte, f float64, bits int) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// plainString says whether encoding/json writes s as it is between quotes:
// printable ASCII without a quote, a backslash or an HTML special (<, >, &,
// which it escapes).
func plainString(s string) bool {
	for i := range len(s) {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
