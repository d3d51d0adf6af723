package handlerset

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// consulKey is the meta key format Consul accepts.
var consulKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func checkConsulLimits(t *testing.T, meta map[string]string) {
	t.Helper()
	if len(meta) > 64 {
		t.Fatalf("%d meta pairs, Consul takes 64", len(meta))
	}
	for k, v := range meta {
		if !consulKey.MatchString(k) || len(k) > 64 || strings.HasPrefix(k, "consul-") {
			t.Errorf("meta key %q is not one Consul takes", k)
		}
		if len(v) > 512 {
			t.Errorf("meta %s is %d characters long, Consul takes 512", k, len(v))
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	many := map[string]Served{}
	for i := range 300 {
		many[fmt.Sprintf("entity%03d.some_rather_long_action_name", i)] = Served{"big", "2.0.0"}
	}
	many["donor.donate"] = Served{"donations", "0.1.0+build 7"}
	many["campaign.credit"] = Served{"donations", "0.1.0+build 7"}
	many["odd,name with@signs"] = Served{"weird/plugin name", "v1"}
	for name, hs := range map[string]map[string]Served{
		"one plugin": {"donor.donate": {"donations", "0.1.0"}, "campaign.credit": {"donations", "0.1.0"}},
		"many":       many,
		"none":       {},
	} {
		s := New(hs)
		meta, err := s.Meta()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkConsulLimits(t, meta)
		meta["partitions"] = "64" // the worker's other keys are ignored
		back, err := FromMeta(meta)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, s) && !(len(back) == 0 && len(s) == 0) {
			t.Fatalf("%s: read back %+v, want %+v", name, back, s)
		}
		for h, sv := range hs {
			if p, ok := back.Serves(h); !ok || p.Name != sv.Plugin || p.Version != sv.Version {
				t.Errorf("%s: %q served by %+v %v, want %+v", name, h, p, ok, sv)
			}
		}
	}
}

func TestMetaReadable(t *testing.T) {
	t.Parallel()
	meta, err := New(map[string]Served{"donor.donate": {"donations", "0.1.0"}, "campaign.credit": {"donations", "0.1.0"}}).Meta()
	if err != nil {
		t.Fatal(err)
	}
	if got := meta["plugin-donations"]; got != "donations@0.1.0 campaign.credit,donor.donate" {
		t.Fatalf("plugin-donations = %q", got)
	}
}

func TestMetaTooLarge(t *testing.T) {
	t.Parallel()
	if _, err := New(map[string]Served{strings.Repeat("x", 600): {"p", "1"}}).Meta(); err == nil {
		t.Error("a 600-character handler name was encoded")
	}
	hs := map[string]Served{}
	for i := range 60 {
		hs[fmt.Sprintf("h%d.a", i)] = Served{fmt.Sprintf("plugin%d", i), "1"}
	}
	if _, err := New(hs).Meta(); err == nil {
		t.Error("60 plugins were encoded in the room of 56 meta values")
	}
}

func TestFromMetaChecksTheSum(t *testing.T) {
	t.Parallel()
	if _, err := FromMeta(map[string]string{"version": "dev"}); !errors.Is(err, ErrNotPublished) {
		t.Errorf("meta without a set: %v", err)
	}
	meta, _ := New(map[string]Served{"a.b": {"p", "1"}, "c.d": {"q", "1"}}).Meta()
	delete(meta, "plugin-q")
	if _, err := FromMeta(meta); err == nil {
		t.Error("a set missing a plugin's entry was read as whole")
	}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	full := New(map[string]Served{"donor.donate": {"donations", "0.2.0"}, "account.add": {"chaos", "0.1.0"}})
	old := New(map[string]Served{"donor.donate": {"donations", "0.1.0"}})
	if d := Compare(map[string]Set{"w1": full, "w2": full}, nil); !d.Empty() {
		t.Fatalf("equal sets differ: %v", d.Lines())
	}
	d := Compare(map[string]Set{"w1": full, "w2": old, "w3": full}, []string{"w4"})
	want := []string{
		"w2 lacks account.add (served elsewhere by chaos@0.1.0)",
		"plugin donations runs at different versions: 0.1.0 on w2; 0.2.0 on w1, w3",
		"w4 publishes no handler set in Consul",
	}
	if got := d.Lines(); !reflect.DeepEqual(got, want) {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDeclsRoundTrip: what handlers declare (internal, their entity)
// travels in the meta with the handler's name, counts in the hash, and a
// set without declarations reads as before.
func TestDeclsRoundTrip(t *testing.T) {
	t.Parallel()
	hs := map[string]Served{
		"stock.add": {"inventory", "1.0.0"}, "stock.reserve": {"inventory", "1.0.0"},
		"order.reserved": {"inventory", "1.0.0"}, "odd!name=x": {"inventory", "1.0.0"},
	}
	decls := map[string]Decl{
		"stock.add":      {Entity: "inventory"},
		"stock.reserve":  {Entity: "inventory"},
		"order.reserved": {Internal: true},
		"odd!name=x":     {Entity: "a=b!", Internal: true},
	}
	plain := New(hs)
	s := New(hs).WithDecls(decls)
	if s.Sum() == plain.Sum() {
		t.Fatal("declarations do not change the hash")
	}
	meta, err := s.Meta()
	if err != nil {
		t.Fatal(err)
	}
	checkConsulLimits(t, meta)
	if got := meta["plugin-inventory"]; got != "inventory@1.0.0 odd%21name%3Dx!=a%3Db%21,order.reserved!,stock.add=inventory,stock.reserve=inventory" {
		t.Fatalf("plugin-inventory = %q", got)
	}
	back, err := FromMeta(meta)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("read back %+v, want %+v", back, s)
	}
	for h, d := range decls {
		if got := back.Decl(h); got != d {
			t.Errorf("Decl(%q) = %+v, want %+v", h, got, d)
		}
	}
	if d := back.Decl("nope.x"); d != (Decl{}) {
		t.Errorf("Decl of a handler not served = %+v", d)
	}
	pm, _ := plain.Meta()
	if pb, err := FromMeta(pm); err != nil || !reflect.DeepEqual(pb, plain) || pb[0].Decls != nil {
		t.Fatalf("a set without declarations read back as %+v, %v", pb, err)
	}
}
