package worker

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// shapeByDecoding is the shape check done the plain way, by decoding the
// payload with encoding/json; validateShape must agree with it.
func shapeByDecoding(payload []byte, shape string) error {
	var want map[string]string
	if err := json.Unmarshal([]byte(shape), &want); err != nil || len(want) == 0 {
		return nil
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(payload, &got); err != nil || got == nil {
		return ErrPayloadShape
	}
	fields := make([]string, 0, len(want))
	for f := range want {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		raw, ok := got[f]
		if !ok || !typeMatches(jsonType(raw), want[f]) {
			return ErrPayloadShape
		}
	}
	return nil
}

func checkShapeAgrees(t *testing.T, payload []byte, shape string) {
	t.Helper()
	err := validateShape(payload, shape)
	if want := shapeByDecoding(payload, shape); (err == nil) != (want == nil) {
		t.Fatalf("payload %q, shape %q: validateShape says %v, decoding says %v", payload, shape, err, want)
	}
	combined := checkPayload(payload, 1<<20, shapeOf(shape))
	var want error
	if want = validatePayload(payload, 1<<20); want == nil {
		want = validateShape(payload, shape)
	}
	if (combined == nil) != (want == nil) || combined != nil && combined.Error() != want.Error() {
		t.Fatalf("payload %q, shape %q: checkPayload says %v, the two checks say %v", payload, shape, combined, want)
	}
}

var shapeCases = []struct{ payload, shape string }{
	{`{"amount_cents":100,"campaign":"water"}`, `{"amount_cents":"integer","campaign":"string"}`},
	{`{"amount_cents":1.5,"campaign":"water"}`, `{"amount_cents":"integer","campaign":"string"}`},
	{`{"amount_cents":1e3,"campaign":"water"}`, `{"amount_cents":"integer","campaign":"string"}`},
	{`{"amount_cents":1.5}`, `{"amount_cents":"number"}`},
	{`{"campaign":"water"}`, `{"amount_cents":"integer","campaign":"string"}`},
	{`{"a":1,"a":"x"}`, `{"a":"string"}`},
	{`{"a":"x","a":1}`, `{"a":"string"}`},
	{`{"\u0061":true}`, `{"a":"boolean"}`},
	{`{"a":null}`, `{"a":"null"}`},
	{`{"a":{"b":1},"c":[1]}`, `{"a":"object","c":"array"}`},
	{`[1,2]`, `{"x":"array"}`},
	{`null`, `{"x":"array"}`},
	{`"s"`, `{"x":"string"}`},
	{`{"a":1`, `{"a":"integer"}`},
	{`{"a":1}`, `not json`},
	{`{"a":1}`, `{"a":1}`},
	{`{"a":1}`, ``},
	{`{"a":1}`, `{}`},
	{` {"a" : -0 } `, `{"a":"integer"}`},
	{"{\"\xff\":1}", "{\"\xff\":\"integer\"}"},
	{`{"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9}`, `{"f1":"integer","f2":"integer","f3":"integer","f4":"integer","f5":"integer","f6":"integer","f7":"integer","f8":"integer","f9":"string"}`},
}

func TestShapeCheckAgreesWithDecoding(t *testing.T) {
	for _, c := range shapeCases {
		checkShapeAgrees(t, []byte(c.payload), c.shape)
	}
}

func TestShapeErrorsNameTheField(t *testing.T) {
	shape := `{"amount_cents":"integer","campaign":"string"}`
	for payload, want := range map[string]string{
		`{"campaign":"water"}`:                    `field "amount_cents" is missing (want integer)`,
		`{"amount_cents":1.5,"campaign":"water"}`: `field "amount_cents" is number, want integer`,
		`{"amount_cents":1,"campaign":2}`:         `field "campaign" is integer, want string`,
		`[1]`:                                     `want a JSON object with ` + shape,
	} {
		err := validateShape([]byte(payload), shape)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("payload %s: got %v, want an error saying %q", payload, err, want)
		}
	}
}

func FuzzShapeCheck(f *testing.F) {
	for _, c := range shapeCases {
		f.Add([]byte(c.payload), c.shape)
	}
	f.Fuzz(func(t *testing.T, payload []byte, shape string) {
		checkShapeAgrees(t, payload, shape)
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
