package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/corralhq/corral/discovery"
)

// groupSummary names each group the members joined (worker --groups, the
// service meta "groups") with its members: "groups: cache (w1, w2), web
// (w1)". "" when no member joined one.
func groupSummary(ms []discovery.Member) string {
	byGroup := map[string][]string{}
	for _, m := range ms {
		if s := m.Meta["groups"]; s != "" {
			for _, g := range strings.Split(s, ",") {
				byGroup[g] = append(byGroup[g], m.ID)
			}
		}
	}
	if len(byGroup) == 0 {
		return ""
	}
	names := make([]string, 0, len(byGroup))
	for g := range byGroup {
		names = append(names, g)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, g := range names {
		ids := byGroup[g]
		sort.Strings(ids)
		parts[i] = fmt.Sprintf("%s (%s)", g, strings.Join(ids, ", "))
	}
	return "groups: " + strings.Join(parts, ", ")
}
