package sdk

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// A state saved by one job of a batch is loaded again by the entity's
// next job in the batch, often of the same type: a hot entity's jobs
// decode the JSON the job before them has just encoded. For a plain type
// that JSON holds every field, each of which decodes to the very value it
// was encoded from, so Load may copy the saved value instead of decoding
// its JSON: the result is the same, down to the fields of v that the JSON
// would have overwritten (all of them).
//
// A plain type is a struct whose fields are all exported, not embedded,
// of a predeclared boolean, integer or floating-point type, each under a
// distinct name with no tag options (no omitempty, omitzero or string),
// and which neither it nor its pointer marshals or unmarshals itself.
// Strings are left out: encoding/json replaces invalid UTF-8 in them.

var plainTypes sync.Map // reflect.Type → bool

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// isPlain says whether t is a plain type.
func isPlain(t reflect.Type) bool {
	if p, ok := plainTypes.Load(t); ok {
		return p.(bool)
	}
	p := plainFields(t, false)
	plainTypes.Store(t, p)
	return p
}

// plainFields says whether t is a plain type or, withStrings, a flat one
// (see plainjson.go): a plain type whose fields may also be strings.
func plainFields(t reflect.Type, withStrings bool) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	pt := reflect.PointerTo(t)
	for _, i := range []reflect.Type{jsonMarshaler, jsonUnmarshaler, textMarshaler, textUnmarshaler} {
		if t.Implements(i) || pt.Implements(i) {
			return false
		}
	}
	names := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		if !f.IsExported() || f.Anonymous {
			return false
		}
		name := f.Tag.Get("json")
		if strings.ContainsAny(name, ",") || name == "-" {
			return false
		}
		if name == "" {
			name = f.Name
		}
		if !plainName(name) || names[strings.ToLower(name)] {
			return false
		}
		names[strings.ToLower(name)] = true
		ft := f.Type
		if ft.PkgPath() != "" || ft.Name() == "" {
			return false // a named type of a package, or a composite one
		}
		switch ft.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
		case reflect.String:
			if !withStrings {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// plainName says whether a field's JSON name is letters, digits and
// underscores only, which encoding/json takes as it is.
func plainName(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// plainValue is v, a value just marshalled, as a value of a plain type
// that no later change to v reaches, or nil when v is not of a plain type
// (or a non-nil pointer to one).
func plainValue(v any) any {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil
	}
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() || !isPlain(rv.Type().Elem()) {
			return nil
		}
		return rv.Elem().Interface() // a copy
	}
	if !isPlain(rv.Type()) {
		return nil
	}
	return v // an interface's struct is a copy no one else changes
}

// loadPlain sets *v to saved, a value of a plain type, and says true, when
// v is a non-nil pointer to saved's type; else it changes nothing.
func loadPlain(v, saved any) bool {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	sv := reflect.ValueOf(saved)
	if rv.Type().Elem() != sv.Type() {
		return false
	}
	rv.Elem().Set(sv)
	return true
}
