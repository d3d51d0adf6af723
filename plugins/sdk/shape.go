package sdk

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// JSON types a payload shape may name, as in handler.proto.
var shapeTypes = map[string]bool{
	"string": true, "integer": true, "number": true, "boolean": true, "object": true, "array": true,
}

// PayloadShape declares the fields every payload of this handler must
// have, each with its JSON type: "string", "integer" (a number without a
// fraction), "number" (integers too), "boolean", "object" or "array".
//
//	sdk.PayloadShape(map[string]string{"amount_cents": "integer", "campaign": "string"})
//
// The worker checks submitted jobs (submit and call) against it and
// refuses, with a reason naming the field, a payload that is not a JSON
// object, lacks a field, or has one of another type (null included);
// nothing is written for such a job, and the handler never sees it.
// Fields that the shape does not name are allowed. Emitted jobs are not
// checked. New panics on an empty field name or an unknown type.
//
// ShapeOf derives the shape from a Go struct instead.
func PayloadShape(fields map[string]string) Option {
	return func(h *HandlerDef) {
		for name, typ := range fields {
			if name == "" || !shapeTypes[typ] {
				h.shapeErr = fmt.Errorf("payload shape field %q has type %q; want one of string, integer, number, boolean, object, array", name, typ)
				return
			}
		}
		b, err := json.Marshal(fields) // keys sorted: the same shape always reads the same
		if err != nil {
			h.shapeErr = err
			return
		}
		h.payloadShape = string(b)
	}
}

// ShapeOf declares the payload shape (see PayloadShape) of struct type T,
// as encoding/json marshals it: every exported field that is not
// omitempty or omitzero is required, under its JSON name, with the JSON
// type of its Go type. Strings are "string", booleans "boolean", integers
// "integer", floats "number", structs and maps "object", slices and
// arrays "array"; []byte and types that marshal as text (time.Time, for
// one) are "string". The fields of an embedded struct without a JSON name
// count as T's own. Left out are fields tagged "-", and fields whose JSON
// type depends on the value: interfaces, json.RawMessage, types with
// their own MarshalJSON. A pointer field has its element's type, so a null
// is refused: make optional fields omitempty.
//
// New panics when T is not a struct or a pointer to one.
//
//	sdk.Handler("donor.donate", donate, sdk.ShapeOf[Donation]())
func ShapeOf[T any]() Option {
	fields, err := shapeOf(reflect.TypeFor[T]())
	if err != nil {
		return func(h *HandlerDef) { h.shapeErr = err }
	}
	return PayloadShape(fields)
}

func shapeOf(t reflect.Type) (map[string]string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("ShapeOf needs a struct type, got %v", t)
	}
	fields := map[string]string{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			inner, err := shapeOf(f.Type)
			if err == nil {
				for k, v := range inner {
					fields[k] = v
				}
			}
			continue
		}
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			continue // optional: not part of the required shape
		}
		if name == "" {
			name = f.Name
		}
		if typ := jsonType(f.Type); typ != "" {
			fields[name] = typ
		}
	}
	return fields, nil
}

var (
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
)

// jsonType is the JSON type encoding/json produces for t, or "" when it
// depends on the value.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler):
		return "string" // time.Time and friends, whatever MarshalJSON they add
	case t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler):
		return ""
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string" // []byte is base64
		}
		return "array"
	case reflect.Array:
		return "array"
	}
	return ""
}
