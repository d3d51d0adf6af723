// Package handlerset is the set of handlers a worker serves, with the name
// and version of the plugin serving each, as the worker publishes it in
// its Consul service meta and as peers and the CLI read it back and
// compare it across the cluster.
//
// Consul limits service meta to 64 pairs, keys to 64 characters of
// [A-Za-z0-9_-] (here; Consul itself allows 128) and values to 512
// characters. The set is one key per plugin, "plugin-<name>", whose value
// is "<name>@<version> <handler>,<handler>,..." (each part query-escaped),
// continued under "plugin-<name>-2" and so on when it is longer than a
// value may be; and "handler-set", a hash of the whole set, which says the
// member publishes one and lets a reader check it read all of it. A
// handler that declares something the others need to know is followed by
// "!" when it is internal (only emitted jobs run it) and by "=<entity>"
// when it declares its entity type, e.g. "order.reserved!" or
// "stock.add=inventory": query-escaping never writes either character.
package handlerset

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Meta keys and limits.
const (
	// SumKey holds the hash of the set; a member without it publishes none.
	SumKey = "handler-set"
	// PluginPrefix starts the key of each plugin's entry.
	PluginPrefix = "plugin-"

	maxKeyLen   = 64
	maxValueLen = 512
	// MaxKeys is how many meta keys a set may take: Consul allows 64 pairs
	// and the worker publishes a handful of its own.
	MaxKeys = 56
)

// ErrNotPublished means a member's meta carries no handler set.
var ErrNotPublished = errors.New("no handler set in the service meta")

// Plugin is one plugin of a worker and the handlers it serves there.
type Plugin struct {
	Name     string
	Version  string
	Handlers []string // sorted
	// Decls are the declarations of the handlers that make one, by
	// handler; nil when none does.
	Decls map[string]Decl
}

// Decl is what a handler declares that other workers need to know: the
// entity type it reads and writes, when it names one, and whether only
// emitted jobs may run it.
type Decl struct {
	Entity   string // "" when the handler works on its name's default
	Internal bool
}

// entry is handler as its plugin's meta value lists it: query-escaped,
// then "!" when internal and "=entity" when it declares one.
func (p Plugin) entry(handler string) string {
	e := esc(handler)
	d := p.Decls[handler]
	if d.Internal {
		e += "!"
	}
	if d.Entity != "" {
		e += "=" + esc(d.Entity)
	}
	return e
}

// parseEntry reads what entry wrote.
func parseEntry(e string) (handler string, d Decl) {
	name, entity, hasEntity := strings.Cut(e, "=")
	if strings.HasSuffix(name, "!") {
		name, d.Internal = strings.TrimSuffix(name, "!"), true
	}
	if hasEntity {
		d.Entity = unesc(entity)
	}
	return unesc(name), d
}

// Label is "name@version".
func (p Plugin) Label() string { return p.Name + "@" + p.Version }

// Set is what one worker serves: its plugins, sorted by name.
type Set []Plugin

// Served says which plugin serves a handler on a worker.
type Served struct{ Plugin, Version string }

// New builds a set from handler → serving plugin.
func New(handlers map[string]Served) Set {
	byPlugin := map[Served][]string{}
	for h, s := range handlers {
		byPlugin[s] = append(byPlugin[s], h)
	}
	s := make(Set, 0, len(byPlugin))
	for sv, hs := range byPlugin {
		sort.Strings(hs)
		s = append(s, Plugin{Name: sv.Plugin, Version: sv.Version, Handlers: hs})
	}
	s.sort()
	return s
}

func (s Set) sort() {
	slices.SortFunc(s, func(a, b Plugin) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
}

// WithDecls records the declarations of s's handlers (by handler name;
// the zero Decl declares nothing) in the plugins that serve them, and
// returns s.
func (s Set) WithDecls(decls map[string]Decl) Set {
	for i := range s {
		for _, h := range s[i].Handlers {
			if d := decls[h]; d != (Decl{}) {
				if s[i].Decls == nil {
					s[i].Decls = map[string]Decl{}
				}
				s[i].Decls[h] = d
			}
		}
	}
	return s
}

// Decl returns what handler declares on this worker: the zero Decl when
// nothing, or when the set does not serve it.
func (s Set) Decl(handler string) Decl {
	p, _ := s.Serves(handler)
	return p.Decls[handler]
}

// Serves returns the plugin that serves handler, if any.
func (s Set) Serves(handler string) (Plugin, bool) {
	for _, p := range s {
		if _, ok := slices.BinarySearch(p.Handlers, handler); ok {
			return p, true
		}
	}
	return Plugin{}, false
}

// Handlers lists every handler of the set, sorted.
func (s Set) Handlers() []string {
	var out []string
	for _, p := range s {
		out = append(out, p.Handlers...)
	}
	sort.Strings(out)
	return out
}

// Sum is a short hash of the set: two workers with the same sum serve the
// same handlers from the same plugin versions.
func (s Set) Sum() string {
	h := sha256.New()
	for _, p := range s {
		hs := make([]string, len(p.Handlers))
		for i, name := range p.Handlers {
			hs[i] = name
			if d, ok := p.Decls[name]; ok {
				hs[i] = fmt.Sprintf("%s\x01%t\x01%s", name, d.Internal, d.Entity)
			}
		}
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", p.Name, p.Version, strings.Join(hs, "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// Meta encodes the set as service meta. It fails only when the set does
// not fit: more than MaxKeys values, or a handler name too long for one.
func (s Set) Meta() (map[string]string, error) {
	meta := map[string]string{SumKey: s.Sum()}
	for _, p := range s {
		head := esc(p.Name) + "@" + esc(p.Version) + " "
		base := PluginPrefix + keyPart(p.Name)
		var b strings.Builder
		flush := func() {
			meta[freeKey(meta, base)] = b.String()
			b.Reset()
		}
		for i, h := range p.Handlers {
			e := p.entry(h)
			if len(head)+len(e) > maxValueLen {
				return nil, fmt.Errorf("handler %q of plugin %s is too long for Consul's service meta (%d characters at most)",
					h, p.Label(), maxValueLen-len(head))
			}
			if b.Len() > 0 && b.Len()+1+len(e) > maxValueLen {
				flush()
			}
			if b.Len() == 0 {
				b.WriteString(head)
			} else {
				b.WriteByte(',')
			}
			b.WriteString(e)
			if i == len(p.Handlers)-1 {
				flush()
			}
		}
		if len(p.Handlers) == 0 {
			b.WriteString(strings.TrimSuffix(head, " "))
			flush()
		}
	}
	if len(meta)-1 > MaxKeys {
		return nil, fmt.Errorf("the handler set (%d plugins, %d handlers) takes %d Consul meta values, more than the %d available",
			len(s), len(s.Handlers()), len(meta)-1, MaxKeys)
	}
	return meta, nil
}

// FromMeta reads the set a member published. It returns ErrNotPublished
// when there is none, and an error when what is there does not add up to
// the published hash.
func FromMeta(meta map[string]string) (Set, error) {
	sum, ok := meta[SumKey]
	if !ok {
		return nil, ErrNotPublished
	}
	byPlugin := map[Served]map[string]bool{}
	decls := map[Served]map[string]Decl{}
	for k, v := range meta {
		if !strings.HasPrefix(k, PluginPrefix) {
			continue
		}
		head, list, _ := strings.Cut(v, " ")
		name, version, ok := strings.Cut(head, "@")
		if !ok {
			return nil, fmt.Errorf("handler set: meta %s=%q is not name@version handlers", k, v)
		}
		sv := Served{Plugin: unesc(name), Version: unesc(version)}
		if byPlugin[sv] == nil {
			byPlugin[sv] = map[string]bool{}
		}
		if list == "" {
			continue
		}
		for _, e := range strings.Split(list, ",") {
			h, d := parseEntry(e)
			byPlugin[sv][h] = true
			if d != (Decl{}) {
				if decls[sv] == nil {
					decls[sv] = map[string]Decl{}
				}
				decls[sv][h] = d
			}
		}
	}
	s := make(Set, 0, len(byPlugin))
	for sv, hs := range byPlugin {
		p := Plugin{Name: sv.Plugin, Version: sv.Version, Decls: decls[sv]}
		for h := range hs {
			p.Handlers = append(p.Handlers, h)
		}
		sort.Strings(p.Handlers)
		s = append(s, p)
	}
	s.sort()
	if got := s.Sum(); got != sum {
		return nil, fmt.Errorf("handler set: the plugin entries hash to %s, the meta says %s", got, sum)
	}
	return s, nil
}

func esc(s string) string { return url.QueryEscape(s) }

func unesc(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// keyPart turns a plugin name into what a meta key may hold.
func keyPart(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	const room = maxKeyLen - len(PluginPrefix) - 4 // a "-NNN" suffix
	if len(b) > room {
		b = b[:room]
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// freeKey is base, or base-2, base-3, ... when taken.
func freeKey(meta map[string]string, base string) string {
	if _, taken := meta[base]; !taken {
		return base
	}
	for n := 2; ; n++ {
		k := base + "-" + strconv.Itoa(n)
		if _, taken := meta[k]; !taken {
			return k
		}
	}
}
