package plugins

import (
	"testing"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// TestEntityType: the default entity type of a handler, on
// the worker (which loads and stores the state) and in the SDK (which hands
// it to the handler) alike.
func TestEntityType(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"donor.donate":    "donor",
		"campaign.credit": "campaign",
		"a.b.c":           "a",
		"nodot":           "nodot",
		".leading":        ".leading", // an entity type is never empty
		"trailing.":       "trailing",
		"":                "",
	}
	for in, want := range tests {
		if got := EntityType(in); got != want {
			t.Errorf("EntityType(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEntityOf: a declared entity wins over the name's prefix.
func TestEntityOf(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		spec *pluginpb.HandlerSpec
		want string
	}{
		{&pluginpb.HandlerSpec{Name: "stock.add"}, "stock"},
		{&pluginpb.HandlerSpec{Name: "stock.add", Entity: "inventory"}, "inventory"},
		{&pluginpb.HandlerSpec{Name: "nodot", Entity: "inventory"}, "inventory"},
	} {
		if got := EntityOf(c.spec); got != c.want {
			t.Errorf("EntityOf(%v) = %q, want %q", c.spec, got, c.want)
		}
	}
}
