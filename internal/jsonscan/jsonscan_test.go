package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

var samples = []string{
	`{"amount_cents":7766,"campaign":"campaign-003"}`, `{}`, ` { } `, `[]`, `[1, 2 ,3]`, `"x"`, `"\u00e9\n\"\\"`, `-0.5e+10`, `0`,
	`true`, `false`, `null`, `{"a":{"b":[{"c":null}]}}`, `{"a" : 1 , "a": [1, 2] }`, "\"\xff\"", `{"k\u0061":1}`,
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `tru`, `nul`,
	`"\x01"`, `"\u00zz"`, `"\q"`, `"abc`, `{"a":1}x`, `1 2`, `{"a":1 "b":2}`, `{1:2}`, `[1}`, `{"a":1]`, "\t[\r\n]\n",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`, `{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range samples {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.40q) = %v, encoding/json says %v", s, got, want)
		}
	}
}

func TestObjectAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range samples {
		checkObject(t, []byte(s))
	}
}

// checkObject compares Object with decoding into a map of raw members.
func checkObject(t *testing.T, b []byte) {
	t.Helper()
	got := map[string]string{}
	ok, isObject := Object(b, func(m Member) {
		k := string(m.Key)
		if m.NeedsUnquote {
			if err := json.Unmarshal([]byte(`"`+k+`"`), &k); err != nil {
				t.Fatalf("escaped key %q does not unquote: %v", m.Key, err)
			}
		}
		got[k] = string(m.Value)
	})
	var want map[string]json.RawMessage
	err := json.Unmarshal(b, &want)
	wantObject := err == nil && want != nil
	if ok != json.Valid(b) {
		t.Fatalf("Object(%.40q) valid = %v, encoding/json.Valid says %v", b, ok, json.Valid(b))
	}
	if ok && isObject != wantObject {
		t.Fatalf("Object(%.40q) isObject = %v, encoding/json: %v", b, isObject, err)
	}
	if !ok || !isObject {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("Object(%.40q) has %d members, encoding/json %d", b, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != string(v) {
			t.Fatalf("Object(%.40q) member %q = %q, encoding/json %q", b, k, got[k], v)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range samples {
		if len(s) < 1000 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
		checkObject(t, b)
	})
}

func BenchmarkValid(b *testing.B) {
	p := []byte(`{"amount_cents":7766,"campaign":"campaign-003"}`)
	b.Run("jsonscan", func(b *testing.B) {
		for b.Loop() {
			Valid(p)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			json.Valid(p)
		}
	})
}
