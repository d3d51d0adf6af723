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

// PayloadShape declares the fields a payload must have and their JSON types
// ("string", "integer", "number", "boolean", "object" or "array"), e.g.
// {"amount_cents": "integer", "campaign": "string"}. The worker checks it at
// submit, so a malformed job is refused before it is queued, with a message
// naming the field, its value and the type wanted. "integer" is a number
// written without a fraction or an exponent that fits an int64 (1e3 and
// 99999999999999999999 are refused), "number" one that fits a float64:
// what Decode takes into an int64 and a float64.
func PayloadShape(fields map[string]string) Option {
	return func(h *HandlerDef) {
		h.payloadShape, h.shapeErr = declareShape(fields, false, h.shapeErr)
	}
}

// OptionalFields declares fields a payload may have, with their JSON types
// as in PayloadShape, or "any" for a field of any type. The worker checks
// the type of each one present (null counts as absent) at submit; with
// NoUnknownFields they are, besides PayloadShape's, the fields a payload
// may hold.
//
//	sdk.Handler("order.place", place, sdk.PayloadShape(map[string]string{"sku": "string"}),
//		sdk.OptionalFields(map[string]string{"note": "string"}), sdk.NoUnknownFields())
func OptionalFields(fields map[string]string) Option {
	return func(h *HandlerDef) {
		h.payloadOptional, h.shapeErr = declareShape(fields, true, h.shapeErr)
	}
}

// NoUnknownFields makes the worker refuse at submit a payload with a field
// that neither PayloadShape nor OptionalFields names, saying which one: a
// misspelled field is caught before the job is queued, where Decode would
// ignore it. ShapeOf declares it unless AllowUnknownFields says otherwise.
func NoUnknownFields() Option {
	return func(h *HandlerDef) { h.unknownFields = refuseUnknown }
}

// AllowUnknownFields lets a payload carry fields its shape does not name
// (Decode ignores them), undoing ShapeOf's NoUnknownFields: for payloads
// that carry more than the handler reads.
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

// ShapeOf declares the payload shape of struct type T, by the fields' JSON
// names: every exported field that is not omitempty (or omitzero) is
// required with the JSON type of its Go type; an omitempty field is
// optional, and so is a field whose JSON type cannot be told from its Go
// type (interfaces, json.RawMessage), with any value. A payload with a
// field T does not have is refused (NoUnknownFields), unless the handler
// declares AllowUnknownFields.
//
//	sdk.Handler("donor.donate", donate, sdk.ShapeOf[Donation]())
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
