package worker

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// decodesAs says whether raw decodes with encoding/json into the Go type a
// shape's JSON type stands for (null, which decodes into anything by
// leaving it alone, is a type of its own).
func decodesAs(raw json.RawMessage, typ string) bool {
	isNull := string(raw) == "null"
	var err error
	switch typ {
	case "any":
		return true
	case "null":
		return isNull
	case "integer":
		var v int64
		err = json.Unmarshal(raw, &v)
	case "number":
		var v float64
		err = json.Unmarshal(raw, &v)
	case "string":
		var v string
		err = json.Unmarshal(raw, &v)
	case "boolean":
		var v bool
		err = json.Unmarshal(raw, &v)
	case "object":
		var v map[string]json.RawMessage
		err = json.Unmarshal(raw, &v)
	case "array":
		var v []json.RawMessage
		err = json.Unmarshal(raw, &v)
	default:
		return false
	}
	return err == nil && !isNull
}

// shapeByDecoding is the shape check done the plain way, by decoding the
// payload with encoding/json into the Go types the shape's JSON types
// stand for; validateShape must agree with it, so that what the check
// accepts a Go handler decodes.
func shapeByDecoding(payload []byte, d shapeDecl) error {
	var required, optional map[string]string
	if json.Unmarshal([]byte(d.required), &required) != nil {
		required = nil
	}
	if json.Unmarshal([]byte(d.optional), &optional) != nil {
		optional = nil
	}
	if len(required) == 0 && len(optional) == 0 && !d.closed {
		return nil
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(payload, &got); err != nil || got == nil {
		return ErrPayloadShape
	}
	fields := make([]string, 0, len(required))
	for f := range required {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		raw, ok := got[f]
		if !ok || !decodesAs(raw, required[f]) {
			return ErrPayloadShape
		}
	}
	for f, typ := range optional {
		if _, req := required[f]; req {
			continue
		}
		if raw, ok := got[f]; ok && string(raw) != "null" && !decodesAs(raw, typ) {
			return ErrPayloadShape
		}
	}
	if d.closed {
		for f := range got {
			_, req := required[f]
			_, opt := optional[f]
			if !req && !opt {
				return ErrPayloadShape
			}
		}
	}
	return nil
}

func checkShapeAgrees(t *testing.T, payload []byte, d shapeDecl) {
	t.Helper()
	err := validateShape(payload, d)
	if want := shapeByDecoding(payload, d); (err == nil) != (want == nil) {
		t.Fatalf("payload %q, shape %+v: validateShape says %v, decoding says %v", payload, d, err, want)
	}
	combined := checkPayload(payload, 1<<20, shapeOf(d))
	var want error
	if want = validatePayload(payload, 1<<20); want == nil {
		want = validateShape(payload, d)
	}
	if (combined == nil) != (want == nil) || combined != nil && combined.Error() != want.Error() {
		t.Fatalf("payload %q, shape %+v: checkPayload says %v, the two checks say %v", payload, d, combined, want)
	}
}

var shapeCases = []struct {
	payload string
	shape   shapeDecl
}{
	{`{"amount_cents":100,"campaign":"water"}`, shapeDecl{required: `{"amount_cents":"integer","campaign":"string"}`}},
	{`{"amount_cents":1.5,"campaign":"water"}`, shapeDecl{required: `{"amount_cents":"integer","campaign":"string"}`}},
	{`{"amount_cents":1e3,"campaign":"water"}`, shapeDecl{required: `{"amount_cents":"integer","campaign":"string"}`}},
	{`{"amount_cents":1.0}`, shapeDecl{required: `{"amount_cents":"integer"}`}},
	{`{"amount_cents":99999999999999999999}`, shapeDecl{required: `{"amount_cents":"integer"}`}},
	{`{"amount_cents":99999999999999999999}`, shapeDecl{required: `{"amount_cents":"number"}`}},
	{`{"amount_cents":9223372036854775807}`, shapeDecl{required: `{"amount_cents":"integer"}`}},
	{`{"amount_cents":9223372036854775808}`, shapeDecl{required: `{"amount_cents":"integer"}`}},
	{`{"amount_cents":-9223372036854775808}`, shapeDecl{required: `{"amount_cents":"integer"}`}},
	{`{"amount_cents":-9223372036854775809}`, shapeDecl{required: `{"amount_cents":"integer"}`}},
	{`{"x":1e400}`, shapeDecl{required: `{"x":"number"}`}},
	{`{"x":1e-400}`, shapeDecl{required: `{"x":"number"}`}},
	{`{"x":1e400}`, shapeDecl{required: `{"x":"any"}`}},
	{`{"amount_cents":1.5}`, shapeDecl{required: `{"amount_cents":"number"}`}},
	{`{"campaign":"water"}`, shapeDecl{required: `{"amount_cents":"integer","campaign":"string"}`}},
	{`{"a":1,"a":"x"}`, shapeDecl{required: `{"a":"string"}`}},
	{`{"a":"x","a":1}`, shapeDecl{required: `{"a":"string"}`}},
	{`{"\u0061":true}`, shapeDecl{required: `{"a":"boolean"}`}},
	{`{"a":null}`, shapeDecl{required: `{"a":"null"}`}},
	{`{"a":null}`, shapeDecl{required: `{"a":"integer"}`}},
	{`{"a":{"b":1},"c":[1]}`, shapeDecl{required: `{"a":"object","c":"array"}`}},
	{`[1,2]`, shapeDecl{required: `{"x":"array"}`}},
	{`null`, shapeDecl{required: `{"x":"array"}`}},
	{`"s"`, shapeDecl{required: `{"x":"string"}`}},
	{`{"a":1`, shapeDecl{required: `{"a":"integer"}`}},
	{`{"a":1}`, shapeDecl{required: `not json`}},
	{`{"a":1}`, shapeDecl{required: `{"a":1}`}},
	{`{"a":1}`, shapeDecl{}},
	{`{"a":1}`, shapeDecl{required: `{}`}},
	{` {"a" : -0 } `, shapeDecl{required: `{"a":"integer"}`}},
	{"{\"\xff\":1}", shapeDecl{required: "{\"\xff\":\"integer\"}"}},
	{`{"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9}`, shapeDecl{required: `{"f1":"integer","f2":"integer","f3":"integer","f4":"integer","f5":"integer","f6":"integer","f7":"integer","f8":"integer","f9":"string"}`}},
	// Optional fields: checked when present, null for absent.
	{`{"qty":1}`, shapeDecl{required: `{"qty":"integer"}`, optional: `{"note":"string"}`}},
	{`{"qty":1,"note":"x"}`, shapeDecl{required: `{"qty":"integer"}`, optional: `{"note":"string"}`}},
	{`{"qty":1,"note":5}`, shapeDecl{required: `{"qty":"integer"}`, optional: `{"note":"string"}`}},
	{`{"qty":1,"note":null}`, shapeDecl{required: `{"qty":"integer"}`, optional: `{"note":"string"}`}},
	{`{"doc":{"a":1}}`, shapeDecl{optional: `{"doc":"any"}`}},
	{`[1]`, shapeDecl{optional: `{"doc":"any"}`}},
	// Closed shapes: no field but the declared ones.
	{`{"qty":1,"qtty":2}`, shapeDecl{required: `{"qty":"integer"}`, closed: true}},
	{`{"qty":1,"note":"x"}`, shapeDecl{required: `{"qty":"integer"}`, optional: `{"note":"string"}`, closed: true}},
	{`{"qty":1,"\u006eote":"x"}`, shapeDecl{required: `{"qty":"integer"}`, optional: `{"note":"string"}`, closed: true}},
	{`{"qty":1,"Qty":1}`, shapeDecl{required: `{"qty":"integer"}`, closed: true}},
	{`{}`, shapeDecl{closed: true}},
	{`{"a":1}`, shapeDecl{closed: true}},
	{`{"a":1}`, shapeDecl{required: `{"a":"integer"}`, optional: `{"a":"string"}`, closed: true}},
}

func TestShapeCheckAgreesWithDecoding(t *testing.T) {
	for _, c := range shapeCases {
		checkShapeAgrees(t, []byte(c.payload), c.shape)
	}
}

// TestShapeErrorsNameTheField: a refused payload's error names the field,
// shows its value and says what it is and what the handler wants.
func TestShapeErrorsNameTheField(t *testing.T) {
	d := shapeDecl{required: `{"amount_cents":"integer","campaign":"string"}`, optional: `{"note":"string"}`, closed: true}
	for payload, want := range map[string]string{
		`{"campaign":"water"}`:                                     `field "amount_cents" is missing (want integer)`,
		`{"amount_cents":1.5,"campaign":"water"}`:                  `field "amount_cents" is 1.5, a number with a fraction or an exponent; want integer`,
		`{"amount_cents":1e3,"campaign":"water"}`:                  `field "amount_cents" is 1e3, a number with a fraction or an exponent; want integer`,
		`{"amount_cents":99999999999999999999,"campaign":"w"}`:     `field "amount_cents" is 99999999999999999999, a number outside the int64 range; want integer`,
		`{"amount_cents":1,"campaign":2}`:                          `field "campaign" is 2, an integer; want string`,
		`{"amount_cents":"ten","campaign":"w"}`:                    `field "amount_cents" is "ten", a string; want integer`,
		`{"amount_cents":1,"campaign":"w","note":[1]}`:             `field "note" is [1], an array; want string`,
		`{"amount_cents":1,"campaign":"w","campain":"x"}`:          `field "campain" is not one the handler takes (it takes: amount_cents, campaign, note)`,
		`{"amount_cents":1,"campain":"w"}`:                         `field "campaign" is missing (want string), and field "campain" is not one the handler takes`,
		`{"amount_cents":1,"campaign":"` + strings.Repeat("x", 60): ``,
		`[1]`: `want a JSON object with ` + d.required,
	} {
		err := validateShape([]byte(payload), d)
		if want == "" {
			continue // not JSON: checkPayload's business
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("payload %s: got %v, want an error saying %q", payload, err, want)
		}
	}
	err := validateShape([]byte(`{"amount_cents":1,"campaign":{"long":"`+strings.Repeat("é", 40)+`"}}`), d)
	if err == nil || !strings.Contains(err.Error(), `field "campaign" is {"long":"ééééééééééééééé…, an object; want string`) {
		t.Errorf("a long value is not cut in the message: %v", err)
	}
}

func FuzzShapeCheck(f *testing.F) {
	for _, c := range shapeCases {
		f.Add([]byte(c.payload), c.shape.required, c.shape.optional, c.shape.closed)
	}
	f.Fuzz(func(t *testing.T, payload []byte, required, optional string, closed bool) {
		checkShapeAgrees(t, payload, shapeDecl{required: required, optional: optional, closed: closed})
	})
}

func TestValidateIDNamesTheCharacter(t *testing.T) {
	for id, want := range map[string]string{
		"gift-1":   "",
		"a/b:c.d_": "",
		"bad id":   `character ' ' at byte 3`,
		"é":        `character 'é' at byte 0`,
		"ok\xff":   "character '\uFFFD' at byte 2",
	} {
		err := validateID(id)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("validateID(%q) = %v, want %q", id, err, want)
		}
	}
}
