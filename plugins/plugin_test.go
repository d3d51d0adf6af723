package plugins

import "testing"

func TestEntityType(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"donor.donate":    "donor",
		"campaign.credit": "campaign",
		"a.b.c":           "a",
		"nodot":           "nodot",
		".leading":        "",
		"":                "",
	}
	for in, want := range tests {
		if got := EntityType(in); got != want {
			t.Errorf("EntityType(%q) = %q, want %q", in, got, want)
		}
	}
}
