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

// PayloadShape declares the fields a payload must have and their JSON types
// ("string", "integer", "number", "boolean", "object" or "array"), e.g.
// {"amount_cents": "integer", "campaign": "string"}. The worker checks it at
// submit, so a malformed job is refused before it is queued.
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

// ShapeOf declares the payload shape of struct type T: every exported field
// that is not omitempty, by its JSON name. Fields whose JSON type cannot be
// told from the Go type (interfaces, json.RawMessage) are left out.
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
