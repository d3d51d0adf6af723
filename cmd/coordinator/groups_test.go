package main

import (
	"testing"

	"github.com/corralhq/corral/discovery"
)

func TestGroupSummary(t *testing.T) {
	t.Parallel()
	ms := []discovery.Member{
		{ID: "w2", Meta: map[string]string{"groups": "web,cache"}},
		{ID: "w1", Meta: map[string]string{"groups": "cache"}},
		{ID: "w3"},
	}
	if got, want := groupSummary(ms), "groups: cache (w1, w2), web (w2)"; got != want {
		t.Errorf("groupSummary = %q, want %q", got, want)
	}
	if got := groupSummary(ms[2:]); got != "" {
		t.Errorf("no groups: %q", got)
	}
}
