package handlerset

import (
	"fmt"
	"sort"
	"strings"
)

// Lack is a worker that does not serve handlers some other worker serves.
type Lack struct {
	Worker   string
	Handlers []string // sorted
	// From are the plugins, "name@version", that serve them elsewhere.
	From []string
}

// Split is a plugin that runs at different versions on different workers.
type Split struct {
	Plugin   string
	Versions map[string][]string // version → workers, sorted
}

// Differences are the ways the workers' sets disagree; empty when they
// all serve the same handlers from the same plugin versions.
type Differences struct {
	Lacks  []Lack  // by worker
	Splits []Split // by plugin
	// Unknown are workers that publish no readable set.
	Unknown []string
}

// Empty reports whether the workers agree.
func (d Differences) Empty() bool {
	return len(d.Lacks) == 0 && len(d.Splits) == 0 && len(d.Unknown) == 0
}

// Compare finds how the sets of workers (worker id → set) differ. unknown
// lists workers whose set could not be read; they are named, not compared.
func Compare(sets map[string]Set, unknown []string) Differences {
	var d Differences
	d.Unknown = append([]string(nil), unknown...)
	sort.Strings(d.Unknown)
	if len(sets) == 0 {
		return d
	}
	workers := make([]string, 0, len(sets))
	for w := range sets {
		workers = append(workers, w)
	}
	sort.Strings(workers)
	servedBy := map[string]map[string]bool{} // handler → plugin labels serving it somewhere
	versions := map[string]map[string][]string{}
	for _, w := range workers {
		for _, p := range sets[w] {
			for _, h := range p.Handlers {
				if servedBy[h] == nil {
					servedBy[h] = map[string]bool{}
				}
				servedBy[h][p.Label()] = true
			}
			if versions[p.Name] == nil {
				versions[p.Name] = map[string][]string{}
			}
			versions[p.Name][p.Version] = append(versions[p.Name][p.Version], w)
		}
	}
	all := make([]string, 0, len(servedBy))
	for h := range servedBy {
		all = append(all, h)
	}
	sort.Strings(all)
	for _, w := range workers {
		l := Lack{Worker: w}
		from := map[string]bool{}
		for _, h := range all {
			if _, ok := sets[w].Serves(h); ok {
				continue
			}
			l.Handlers = append(l.Handlers, h)
			for p := range servedBy[h] {
				from[p] = true
			}
		}
		if len(l.Handlers) == 0 {
			continue
		}
		for p := range from {
			l.From = append(l.From, p)
		}
		sort.Strings(l.From)
		d.Lacks = append(d.Lacks, l)
	}
	names := make([]string, 0, len(versions))
	for n := range versions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if len(versions[n]) > 1 {
			d.Splits = append(d.Splits, Split{Plugin: n, Versions: versions[n]})
		}
	}
	return d
}

// Lines says each difference in a sentence, for a person.
func (d Differences) Lines() []string {
	var out []string
	for _, l := range d.Lacks {
		out = append(out, fmt.Sprintf("%s lacks %s (served elsewhere by %s)",
			l.Worker, strings.Join(l.Handlers, ", "), strings.Join(l.From, ", ")))
	}
	for _, s := range d.Splits {
		vs := make([]string, 0, len(s.Versions))
		for v := range s.Versions {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = fmt.Sprintf("%s on %s", v, strings.Join(s.Versions[v], ", "))
		}
		out = append(out, fmt.Sprintf("plugin %s runs at different versions: %s", s.Plugin, strings.Join(parts, "; ")))
	}
	for _, w := range d.Unknown {
		out = append(out, fmt.Sprintf("%s publishes no handler set in Consul", w))
	}
	return out
}
