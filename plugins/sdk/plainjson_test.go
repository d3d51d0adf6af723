package sdk

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// flatAll has a field of every kind a flat type may have.
type flatAll struct {
	B   bool    `json:"b"`
	I   int     `json:"i"`
	I8  int8    `json:"i8"`
	I16 int16   `json:"i16"`
	I32 int32   `json:"i32"`
	I64 int64   `json:"i64"`
	U   uint    `json:"u"`
	U8  uint8   `json:"u8"`
	U16 uint16  `json:"u16"`
	U32 uint32  `json:"u32"`
	U64 uint64  `json:"u64"`
	F32 float32 `json:"f32"`
	F64 float64 `json:"f64"`
	S   string  `json:"s"`
	Up  string  // no tag: its Go name
}

func prefilled() flatAll {
	return flatAll{B: true, I: -7, I8: 8, I16: 16, I32: 32, I64: 64, U: 1, U8: 2, U16: 3, U32: 4, U64: 5,
		F32: 1.5, F64: 2.25, S: "before", Up: "up"}
}

// sameAsJSON unmarshals doc with unmarshal and with encoding/json into
// copies of the same value and fails unless the values and the errors are
// the same.
func sameAsJSON[T any](t *testing.T, doc string, start T) {
	t.Helper()
	want, got := start, start
	wantErr := json.Unmarshal([]byte(doc), &want)
	gotErr := unmarshal([]byte(doc), &got)
	if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
		t.Fatalf("%s: error %v, encoding/json's %v", doc, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: decoded %+v, encoding/json %+v", doc, got, want)
	}
}

func TestUnmarshalFlatIsEncodingJSONs(t *testing.T) {
	docs := []string{
		`{}`, ` { } `, `null`, `[]`, `1`, `"s"`, ``, `{`, `{"b":true}x`, `{"b":tru}`,
		`{"b":false,"i":-1,"i8":-128,"i16":32767,"i32":-2147483648,"i64":9223372036854775807}`,
		`{"u":0,"u8":255,"u16":65535,"u32":4294967295,"u64":18446744073709551615}`,
		`{"f32":3.4028234663852886e38,"f64":-1.7976931348623157e308,"s":"plain","Up":"x"}`,
		`{"f32":1e-46,"f64":5e-324}`, `{"f64":0.1,"f32":0.1}`, `{"f64":-0}`, `{"f64":-0.0}`,
		`{"i8":128}`, `{"i8":-129}`, `{"u8":256}`, `{"u":-1}`, `{"i":1.0}`, `{"i":1e3}`, `{"i":"1"}`,
		`{"f32":3.5e38}`, `{"f64":1e400}`, `{"b":1}`, `{"b":"true"}`, `{"s":1}`, `{"s":null}`, `{"i":null,"b":null}`,
		`{"s":"a\"b"}`, `{"s":"\u00e9"}`, `{"s":"é"}`, `{"s":"\xff"}`, `{"s":"<&>"}`, `{"s":"line\nbreak"}`,
		`{"B":false,"I":3,"uP":"folded"}`, `{"up":"lower","Up":"exact"}`, `{"Up":"exact","up":"lower"}`,
		`{"i":1,"i":2}`, `{"i":"x","i":2}`, `{"unknown":{"nested":[1,2,{"a":null}]},"i":5}`,
		`{"\u0069":9}`, `{"ı":9}`, `{"i":1,"b":[true]}`, `{"s":"x","b":{}}`,
		"{\"s\":\"tab\there\"}", `{"i" : 4 , "s" : "spaced" }`,
	}
	for _, doc := range docs {
		sameAsJSON(t, doc, prefilled())
		sameAsJSON(t, doc, flatAll{})
	}
	// Types that are not flat (see plain_test.go) take encoding/json's way.
	for _, doc := range []string{`{"n":1}`, `{"n":"2"}`, `{"N":3,"n":4}`, `{"x":1,"X":2}`, `{"S":[1]}`, `{"S":"s"}`,
		`{"C":{"n":5}}`, `{"a-b":6}`, `{"D":7}`, `{"n":8,"N":9}`} {
		sameAsJSON(t, doc, withString{})
		sameAsJSON(t, doc, withOmit{})
		sameAsJSON(t, doc, withAsString{})
		sameAsJSON(t, doc, withSkip{})
		sameAsJSON(t, doc, withHidden{})
		sameAsJSON(t, doc, withNamed{})
		sameAsJSON(t, doc, withNested{})
		sameAsJSON(t, doc, withSlice{})
		sameAsJSON(t, doc, withSameNames{})
		sameAsJSON(t, doc, withOddName{})
		sameAsJSON(t, doc, embedsPlain{})
		sameAsJSON(t, doc, ownJSON{})
	}
}

// FuzzUnmarshalFlat: for any document, unmarshal is encoding/json.
func FuzzUnmarshalFlat(f *testing.F) {
	for _, s := range []string{`{"b":true,"i":3,"s":"x"}`, `{"f64":1e-7,"u8":7}`, `{"S":"\u0041","I":-0}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		sameAsJSON(t, doc, prefilled())
	})
}

func TestUnmarshalFlatTakesItsWay(t *testing.T) {
	var v flatAll
	if !unmarshalFlat([]byte(`{"b":true,"i":3,"f64":0.5,"s":"x","Up":"y"}`), &v) {
		t.Fatal("a flat document into a flat type went to encoding/json")
	}
	if v != (flatAll{B: true, I: 3, F64: 0.5, S: "x", Up: "y"}) {
		t.Fatalf("decoded %+v", v)
	}
	for _, v := range []any{&withOmit{}, &withAsString{}, &withNested{}, &withSlice{}, &withSameNames{}, &withNamed{}, &ownJSON{},
		flatAll{}, (*flatAll)(nil)} {
		if unmarshalFlat([]byte(`{}`), v) {
			t.Errorf("%T decoded the short way", v)
		}
	}
}

func TestMarshalFlatIsEncodingJSONs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-6, 9.99999e-7, 1e-7, 1e20, 1e21, 123456789e13, 5e-324,
		math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, math.MaxFloat32, 1.0 / 3, math.NaN(), math.Inf(1), math.Inf(-1)}
	strs := []string{"", "plain", "with space", `q"uote`, `back\slash`, "<tag>", "a&b", "tab\t", "é", "\xff", "\u2028", "~"}
	check := func(v any) {
		t.Helper()
		want, wantErr := json.Marshal(v)
		got, gotErr := marshal(v)
		if (wantErr == nil) != (gotErr == nil) || string(got) != string(want) {
			t.Fatalf("%+v: marshalled %s (%v), encoding/json %s (%v)", v, got, gotErr, want, wantErr)
		}
	}
	for i := range 5000 {
		v := flatAll{B: rng.IntN(2) == 0, I: rng.Int(), I8: int8(rng.Uint32()), I16: int16(rng.Uint32()), I32: rng.Int32() - 1<<30,
			I64: int64(rng.Uint64()), U: uint(rng.Uint64()), U8: uint8(rng.Uint32()), U16: uint16(rng.Uint32()), U32: rng.Uint32(),
			U64: rng.Uint64(), S: strs[rng.IntN(len(strs))], Up: strs[rng.IntN(len(strs))]}
		switch i % 3 {
		case 0:
			v.F64, v.F32 = floats[rng.IntN(len(floats))], float32(floats[rng.IntN(len(floats))])
		case 1:
			v.F64, v.F32 = math.Float64frombits(rng.Uint64()), math.Float32frombits(rng.Uint32())
		default:
			v.F64, v.F32 = rng.NormFloat64()*math.Pow(10, float64(rng.IntN(60)-30)), float32(rng.ExpFloat64()*1e-5)
		}
		check(v)
		check(&v)
	}
	for _, v := range []any{withOmit{N: 1}, withAsString{N: 2}, withNested{}, withSlice{S: []int{1}}, withSameNames{A: 1, B: 2},
		withNamed{D: 3}, ownJSON{N: 4}, withString{S: "<"}, embedsPlain{},
		(*flatAll)(nil), nil, json.RawMessage(`{"raw":1}`), 5, "s", map[string]int{"a": 1}} {
		check(v)
	}
	if _, ok := marshalFlat(flatAll{S: "x", F64: 1.5}); !ok {
		t.Fatal("a flat value went to encoding/json")
	}
	if !strings.Contains(string(must(marshal(flatAll{Up: "u"}))), `"Up":"u"`) {
		t.Fatal("an untagged field lost its Go name")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// The donations example's payload and state, as the plugin reads and
// writes them for each donation.
type (
	benchDonation struct {
		AmountCents int64  `json:"amount_cents"`
		Campaign    string `json:"campaign"`
	}
	benchDonor struct {
		TotalCents int64 `json:"total_cents"`
		Count      int64 `json:"count"`
		ZakatCents int64 `json:"zakat_cents"`
	}
)

// BenchmarkFlatJSON: a donation's payload read and its donor's state read
// and written, by encoding/json and by unmarshal and marshal.
func BenchmarkFlatJSON(b *testing.B) {
	payload := []byte(`{"amount_cents":12345,"campaign":"campaign-17"}`)
	state := []byte(`{"total_cents":987654321,"count":4321,"zakat_cents":24691358}`)
	for _, way := range []struct {
		name      string
		unmarshal func([]byte, any) error
		marshal   func(any) ([]byte, error)
	}{{"encoding-json", json.Unmarshal, json.Marshal}, {"flat", unmarshal, marshal}} {
		b.Run(way.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var d benchDonation
				var s benchDonor
				if way.unmarshal(payload, &d) != nil || way.unmarshal(state, &s) != nil {
					b.Fatal("decode")
				}
				s.TotalCents += d.AmountCents
				if _, err := way.marshal(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
