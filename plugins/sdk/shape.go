package sdk

import (
	"cmp"
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
)

// JSON types a payload shape may name, as in handler.proto.
var shapeTypes = map[string]bool{
	"string": true, "integer": true, "number": true, "boolean": true, "object": true, "array": true,
}

// PayloadShape declares the fields every payload of this handler must
// have, each with its JSON type: "string", "integer", "number",
// "boolean", "object" or "array".
//
//	sdk.PayloadShape(map[string]string{"amount_cents": "integer", "campaign": "string"})
//
// The worker checks submitted jobs (submit and call) against it and
// refuses, with one line naming the field, its value and the type wanted,
// a payload that is not a JSON object, lacks a field, or has one of
// another type (null included); nothing is written for such a job, and
// the handler never sees it. The types are the ones Decode takes into Go:
// "integer" is a number written without a fraction or an exponent that
// fits an int64 (1e3, 3.0 and 99999999999999999999 are refused), "number"
// one that fits a float64 (integers too). Only the top level is checked:
// nested objects' fields, and the range of a narrower Go type (int8,
// uint), are Decode's to refuse.
//
// Fields that the shape does not name are allowed, unless the handler
// also declares NoUnknownFields; OptionalFields declares fields that may
// be absent. Emitted jobs are not checked. New panics on an empty field
// name or an unknown type.
//
// ShapeOf derives the shape from a Go struct instead.
func PayloadShape(fields map[string]string) Option {
	return func(h *HandlerDef) {
		h.payloadShape, h.shapeErr = declareShape(fields, false, h.shapeErr)
	}
}

// OptionalFields declares fields a payload may have, with their JSON types
// as in PayloadShape, or "any" for a field of any type. The worker checks
// at submit the type of each one present, a null counting as absent; with
// NoUnknownFields they are, besides PayloadShape's, the fields a payload
// may hold. A field that PayloadShape names too is required. New panics on
// an empty field name or an unknown type.
//
//	sdk.Handler("order.place", place, sdk.PayloadShape(map[string]string{"sku": "string"}),
//		sdk.OptionalFields(map[string]string{"note": "string"}), sdk.NoUnknownFields())
func OptionalFields(fields map[string]string) Option {
	return func(h *HandlerDef) {
		h.payloadOptional, h.shapeErr = declareShape(fields, true, h.shapeErr)
	}
}

// NoUnknownFields makes the worker refuse at submit a payload with a field
// that neither PayloadShape nor OptionalFields names, saying which one
// and listing those the handler takes: a misspelled field is caught
// before the job is queued, where Decode would ignore it. With no field
// declared, it admits only {}. ShapeOf declares it unless
// AllowUnknownFields says otherwise; of the two, the later wins.
func NoUnknownFields() Option {
	return func(h *HandlerDef) { h.unknownFields = refuseUnknown }
}

// AllowUnknownFields lets a payload carry fields its shape does not name
// (Decode ignores them), undoing ShapeOf's NoUnknownFields: for payloads
// that carry more than the handler reads. It is the default of a shape
// declared with PayloadShape.
func AllowUnknownFields() Option {
	return func(h *HandlerDef) { h.unknownFields = allowUnknown }
}

// What a handler declared about fields its shape does not name.
const (
	unknownUndeclared = iota // refused when the shape comes from ShapeOf
	refuseUnknown
	allowUnknown
)

// closed says whether the worker refuses fields the shape does not name.
func (h *HandlerDef) closed() bool {
	return h.unknownFields == refuseUnknown || h.unknownFields == unknownUndeclared && h.fromStruct
}

// declareShape is fields as a shape declaration: JSON with sorted keys, so
// the same shape always reads the same. A bad one replaces prev, an earlier
// declaration's error; a good one keeps it.
func declareShape(fields map[string]string, optional bool, prev error) (string, error) {
	for name, typ := range fields {
		if name == "" || !shapeTypes[typ] && !(optional && typ == "any") {
			err := fmt.Errorf("payload shape field %q has type %q; want one of string, integer, number, boolean, object, array", name, typ)
			if optional {
				err = fmt.Errorf("optional field %q has type %q; want one of string, integer, number, boolean, object, array, any", name, typ)
			}
			return "", err
		}
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return "", err
	}
	return string(b), prev
}

// ShapeOf declares the payload shape (see PayloadShape) of struct type T,
// as encoding/json decodes it, and that a payload may hold no other field
// (NoUnknownFields), where Decode would ignore one: a misspelled field is
// refused at submit, naming it, instead of reaching the handler as a zero
// value.
//
// Every exported field that is not omitempty or omitzero is required,
// under its JSON name, with the JSON type of its Go type. Strings are
// "string", booleans "boolean", integers "integer", floats "number",
// structs and maps "object", slices and arrays "array"; []byte and types
// that marshal as text (time.Time, for one) are "string". An omitempty or
// omitzero field is optional (OptionalFields): checked when present, and
// a null counts as absent. A field whose JSON type depends on the value
// (an interface, json.RawMessage, a type with its own MarshalJSON) is
// optional with any value. The fields of an embedded struct without a
// JSON name count as T's own; fields tagged "-" are left out. A pointer
// field has its element's type, so a null is refused: make optional
// fields omitempty.
//
//	sdk.Handler("donor.donate", donate, sdk.ShapeOf[Donation]())
//
// AllowUnknownFields, given after ShapeOf, lets fields T does not have
// through, for payloads that carry more than the handler reads. New
// panics when T is not a struct or a pointer to one.
func ShapeOf[T any]() Option {
	required, optional, err := shapeOf(reflect.TypeFor[T]())
	return func(h *HandlerDef) {
		if err != nil {
			h.shapeErr = err
			return
		}
		PayloadShape(required)(h)
		if len(optional) > 0 {
			OptionalFields(optional)(h)
		}
		h.fromStruct = true
	}
}

// shapeOf is the required and optional fields of struct type t, as
// encoding/json names them.
func shapeOf(t reflect.Type) (required, optional map[string]string, err error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, nil, fmt.Errorf("ShapeOf needs a struct type, got %v", t)
	}
	required, optional = map[string]string{}, map[string]string{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			if req, opt, err := shapeOf(f.Type); err == nil {
				// An embedded struct's fields are the payload's own.
				maps.Copy(required, req)
				maps.Copy(optional, opt)
				continue
			}
			if !f.IsExported() {
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		typ := jsonType(f.Type)
		switch {
		case strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") || typ == "":
			optional[name] = cmp.Or(typ, "any")
		default:
			required[name] = typ
		}
	}
	return required, optional, nil
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
