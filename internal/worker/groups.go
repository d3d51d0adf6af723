package worker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/corralhq/corral/discovery"
)

// metaGroups is the service meta key under which a worker publishes the
// groups it joined, comma-separated; each is also a tag "group:NAME", for
// a Consul query or the UI.
const metaGroups = "groups"

// validateGroups accepts group names of letters, digits, "-", "_" and ".",
// each named once.
func validateGroups(gs []string) error {
	for i, g := range gs {
		if g == "" {
			return fmt.Errorf("group name %d is empty", i+1)
		}
		for _, r := range g {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return fmt.Errorf("group %q: a group name holds only letters, digits, '-', '_' and '.'", g)
			}
		}
		if slices.Contains(gs[:i], g) {
			return fmt.Errorf("group %q is named twice", g)
		}
	}
	return nil
}

func groupTags(gs []string) []string {
	tags := make([]string, len(gs))
	for i, g := range gs {
		tags[i] = "group:" + g
	}
	return tags
}

// groupsOf is the groups a member published.
func groupsOf(m discovery.Member) []string {
	if s := m.Meta[metaGroups]; s != "" {
		return strings.Split(s, ",")
	}
	return nil
}

// inGroup is the members of group, or all of them when group is "".
func inGroup(ms []discovery.Member, group string) []discovery.Member {
	if group == "" {
		return ms
	}
	var out []discovery.Member
	for _, m := range ms {
		if slices.Contains(groupsOf(m), group) {
			out = append(out, m)
		}
	}
	return out
}
