package worker

import (
	"testing"

	"github.com/corralhq/corral/discovery"
)

func TestGroups(t *testing.T) {
	t.Parallel()
	for _, gs := range [][]string{nil, {"cache"}, {"cache", "web-1", "eu_west.2"}} {
		if err := validateGroups(gs); err != nil {
			t.Errorf("groups %q refused: %v", gs, err)
		}
	}
	for _, gs := range [][]string{{""}, {"a b"}, {"a,b"}, {"cache", "cache"}} {
		if err := validateGroups(gs); err == nil {
			t.Errorf("groups %q accepted", gs)
		}
	}
	ms := []discovery.Member{
		{ID: "w1", Meta: map[string]string{metaGroups: "cache,web"}},
		{ID: "w2", Meta: map[string]string{metaGroups: "web"}},
		{ID: "w3"},
	}
	ids := func(ms []discovery.Member) (out []string) {
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	if got := ids(inGroup(ms, "cache")); len(got) != 1 || got[0] != "w1" {
		t.Errorf("group cache: %v", got)
	}
	if got := ids(inGroup(ms, "web")); len(got) != 2 {
		t.Errorf("group web: %v", got)
	}
	if got := ids(inGroup(ms, "")); len(got) != 3 {
		t.Errorf("no group: %v", got)
	}
	if got := groupTags([]string{"cache"}); len(got) != 1 || got[0] != "group:cache" {
		t.Errorf("tags %v", got)
	}
}
