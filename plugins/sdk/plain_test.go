package sdk

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/corralhq/corral/plugins/pluginpb"
)

type plainCounter struct {
	N     int64   `json:"n"`
	Small int8    `json:"small"`
	U     uint64  `json:"u"`
	F     float64 `json:"f"`
	F32   float32
	On    bool `json:"on"`
}

type (
	withString struct{ S string }
	withOmit   struct {
		N int `json:"n,omitempty"`
	}
	withAsString struct {
		N int `json:"n,string"`
	}
	withSkip struct {
		N int `json:"-"`
	}
	withHidden    struct{ N, n int }
	withNamed     struct{ D time.Duration }
	withNested    struct{ C plainCounter }
	withSlice     struct{ S []int }
	withSameNames struct {
		A int `json:"x"`
		B int `json:"X"`
	}
	withOddName struct {
		A int `json:"a-b"`
	}
	embedsPlain struct{ plainCounter }
	ownJSON     struct{ N int }
)

func (ownJSON) MarshalJSON() ([]byte, error) { return []byte(`{"N":1}`), nil }

func TestPlainTypes(t *testing.T) {
	if !isPlain(reflect.TypeFor[plainCounter]()) || !isPlain(reflect.TypeFor[struct{}]()) {
		t.Fatal("plainCounter and struct{} are plain")
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[withString](), reflect.TypeFor[withOmit](), reflect.TypeFor[withAsString](),
		reflect.TypeFor[withSkip](), reflect.TypeFor[withHidden](), reflect.TypeFor[withNamed](),
		reflect.TypeFor[withNested](), reflect.TypeFor[withSlice](), reflect.TypeFor[withSameNames](),
		reflect.TypeFor[withOddName](), reflect.TypeFor[embedsPlain](), reflect.TypeFor[ownJSON](),
		reflect.TypeFor[int](), reflect.TypeFor[map[string]int](), reflect.TypeFor[*plainCounter](),
	} {
		if isPlain(typ) {
			t.Errorf("%v is taken for plain", typ)
		}
	}
}

// A plain value loaded from its save is what decoding its JSON gives,
// whatever the value loaded into held before.
func TestPlainLoadIsDecode(t *testing.T) {
	for _, v := range []plainCounter{
		{},
		{N: math.MinInt64, Small: -128, U: math.MaxUint64, F: math.Copysign(0, -1), F32: math.MaxFloat32, On: true},
		{N: 7, F: 0.1, F32: 1e-45},
		{F: math.SmallestNonzeroFloat64, F32: 3.4e38},
		{F: 1e21, F32: 1.0000001},
	} {
		for _, saved := range []any{v, &v} {
			b, err := json.Marshal(saved)
			if err != nil {
				t.Fatal(err)
			}
			want := plainCounter{N: 99, Small: 1, U: 2, F: 3, F32: 4, On: true}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			pv := plainValue(saved)
			if pv == nil {
				t.Fatalf("%#v not taken for plain", saved)
			}
			got := plainCounter{N: 99, Small: 1, U: 2, F: 3, F32: 4, On: true}
			if !loadPlain(&got, pv) {
				t.Fatal("loadPlain refused a *plainCounter")
			}
			if math.Float64bits(got.F) != math.Float64bits(want.F) || got != want {
				t.Fatalf("loaded %#v, decoding gives %#v", got, want)
			}
		}
	}
	v := plainCounter{N: 1}
	pv := plainValue(&v)
	v.N = 2 // a change after the save does not reach what was saved
	var got plainCounter
	if loadPlain(&got, pv); got.N != 1 {
		t.Fatalf("loaded N %d, want the saved 1", got.N)
	}
	var other struct{ N int64 }
	if loadPlain(&other, pv) || loadPlain(got, pv) || loadPlain((*plainCounter)(nil), pv) {
		t.Fatal("loadPlain took another type, a non-pointer or a nil pointer")
	}
	if plainValue(withString{"x"}) != nil || plainValue((*plainCounter)(nil)) != nil || plainValue(nil) != nil {
		t.Fatal("plainValue took a value of a type that is not plain")
	}
}

// Through a batch: the jobs of a hot entity see the state the job before
// saved, whether it was loaded from its JSON or from the saved value, and
// a failed job's save is seen by no one.
func TestPlainStateThroughBatch(t *testing.T) {
	fail := map[string]bool{"j3": true}
	p := New("t", "", Handler("c.add", func(c *Call) error {
		var s plainCounter
		if _, err := c.Load(&s); err != nil {
			return err
		}
		s.N++
		s.F += 0.1
		if err := c.Save(&s); err != nil {
			return err
		}
		if fail[c.ID()] {
			return Fail(nil)
		}
		return c.SetResult(s)
	}), Handler("c.str", func(c *Call) error {
		var s struct {
			N int64 `json:"n"`
		}
		if _, err := c.Load(&s); err != nil {
			return err
		}
		s.N += 10
		return c.Save(s)
	}))
	var jobs []*pluginpb.Job
	for _, id := range []string{"j1", "j2", "j3", "j4", "j5", "j6"} {
		h := "c.add"
		if id == "j5" {
			h = "c.str"
		}
		jobs = append(jobs, &pluginpb.Job{Id: id, Handler: h, Key: "k", Payload: []byte(`{}`)})
	}
	resp, err := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "c", Key: "k", State: []byte(`{"n":5,"f":0.5}`)}},
		Jobs:     jobs,
	})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, o := range resp.Outcomes {
		states = append(states, string(o.State))
	}
	want := []string{
		`{"n":6,"small":0,"u":0,"f":0.6,"F32":0,"on":false}`,
		`{"n":7,"small":0,"u":0,"f":0.7,"F32":0,"on":false}`,
		"", // failed: its save is not seen
		`{"n":8,"small":0,"u":0,"f":0.7999999999999999,"F32":0,"on":false}`,
		`{"n":18}`,
		`{"n":19,"small":0,"u":0,"f":0.1,"F32":0,"on":false}`, // decoded: j5 saved another type
	}
	if !reflect.DeepEqual(states, want) {
		t.Fatalf("states\n%q\nwant\n%q", states, want)
	}
}
