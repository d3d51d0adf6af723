package plugins

import "testing"

// TestEntityType: the one function that names a handler's entity type, on
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
