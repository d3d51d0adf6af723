package worker

import (
	"fmt"
	"sort"
	"strings"

	"github.com/corralhq/corral/internal/handlerset"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/sharding"
)

// handlerCatalog knows which handlers the cluster serves: this worker's
// own, from its plugins, and its peers', from the sets they publish in
// their Consul meta (see internal/handlerset). Workers may differ for a
// while, during a rolling upgrade that adds a handler; the catalog is how
// submit refuses a job its key's owner cannot run, and how a commit
// refuses an emitted job no worker can run.
type handlerCatalog struct {
	self  string
	local interface {
		Handlers() map[string]host.HandlerInfo
	}
	view interface {
		current() *sharding.Ring
		handlerSets() *memberHandlers
	}
}

// localSet is what this worker serves, as it publishes it: with each
// handler's plugin, whether it is internal, and the entity type it
// declares when that is not its name's default, so that a worker without
// the handler still refuses it at submit and knows its entity.
func localSet(hs map[string]host.HandlerInfo) handlerset.Set {
	m := make(map[string]handlerset.Served, len(hs))
	decls := map[string]handlerset.Decl{}
	for name, h := range hs {
		m[name] = handlerset.Served{Plugin: h.Plugin, Version: h.Version}
		d := handlerset.Decl{Internal: h.Internal}
		if h.Entity != "" && h.Entity != plugins.EntityType(name) {
			d.Entity = h.Entity
		}
		if d != (handlerset.Decl{}) {
			decls[name] = d
		}
	}
	return handlerset.New(m).WithDecls(decls)
}

// serves says whether worker id serves handler; known is false when the
// worker publishes no readable set (it is then given the benefit of the
// doubt). local is this worker's handler table.
func (c *handlerCatalog) serves(id, handler string, local map[string]host.HandlerInfo) (ok, known bool) {
	if id == c.self {
		_, ok = local[handler]
		return ok, true
	}
	s, known := c.view.handlerSets().sets[id]
	if !known {
		return false, false
	}
	_, ok = s.Serves(handler)
	return ok, true
}

// servedBy splits the members that publish a set, this worker included,
// into those that serve handler and those that do not.
func (c *handlerCatalog) servedBy(handler string, local map[string]host.HandlerInfo) (with, without []string) {
	ids := []string{c.self}
	for id := range c.view.handlerSets().sets {
		if id != c.self {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if ok, _ := c.serves(id, handler, local); ok {
			with = append(with, id)
		} else {
			without = append(without, id)
		}
	}
	return with, without
}

// known says whether this worker or any member serves handler.
func (c *handlerCatalog) known(handler string, local map[string]host.HandlerInfo) bool {
	if _, ok := local[handler]; ok {
		return true
	}
	return c.view.handlerSets().served[handler]
}

// all lists every handler this worker or a member serves, sorted.
func (c *handlerCatalog) all(local map[string]host.HandlerInfo) []string {
	set := map[string]bool{}
	for h := range local {
		set[h] = true
	}
	for h := range c.view.handlerSets().served {
		set[h] = true
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// submittable lists the handlers of all that are not internal: those a
// submitter may name.
func (c *handlerCatalog) submittable(local map[string]host.HandlerInfo) []string {
	var out []string
	for _, h := range c.all(local) {
		if !c.internal(h, local) {
			out = append(out, h)
		}
	}
	return out
}

// internal says whether handler is declared internal: by this worker's
// plugin when it serves it, else by a member that publishes it so.
func (c *handlerCatalog) internal(handler string, local map[string]host.HandlerInfo) bool {
	if h, ok := local[handler]; ok {
		return h.Internal
	}
	for _, s := range c.view.handlerSets().sets {
		if s.Decl(handler).Internal {
			return true
		}
	}
	return false
}

// entities lists, sorted, the entity types the handlers of this worker
// and of the members read and write: what they declare, else their
// names' default. A worker that lacks a plugin still knows its entities,
// so coordinator state may ask any worker.
func (c *handlerCatalog) entities(local map[string]host.HandlerInfo) []string {
	set := map[string]bool{}
	entity := entityOf(local)
	for h := range local {
		set[entity(h)] = true
	}
	for _, s := range c.view.handlerSets().sets {
		for _, p := range s {
			for _, h := range p.Handlers {
				if e := p.Decls[h].Entity; e != "" {
					set[e] = true
				} else {
					set[plugins.EntityType(h)] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// unknownHere explains a job whose handler this worker does not serve:
// no worker serves it, or some do (a rolling upgrade is under way).
func (c *handlerCatalog) unknownHere(handler string, local map[string]host.HandlerInfo) error {
	with, without := c.servedBy(handler, local)
	if len(with) == 0 {
		return fmt.Errorf("%w %q (this cluster serves: %s)", ErrUnknownHandler, handler, strings.Join(c.submittable(local), ", "))
	}
	return fmt.Errorf("%w %q on worker %s, which took the job; workers with it: %s; workers without it: %s. Submit it once every worker serves it ('coordinator status' lists the differences)",
		ErrUnknownHandler, handler, c.self, strings.Join(with, ", "), strings.Join(without, ", "))
}

// ownerServes says whether the ring gives partition p to another worker
// that publishes handler among those it serves.
func (c *handlerCatalog) ownerServes(handler string, p int, local map[string]host.HandlerInfo) bool {
	ring := c.view.current()
	if ring == nil {
		return false
	}
	owner := ring.OwnerOf(p)
	if owner == "" || owner == c.self {
		return false
	}
	ok, _ := c.serves(owner, handler, local)
	return ok
}

// ownerLacks refuses a job for handler whose partition p the ring gives to
// a worker that publishes a set without it. Nil when the owner serves it,
// or cannot be told (no ring yet, or no set published).
func (c *handlerCatalog) ownerLacks(handler, key string, p int, local map[string]host.HandlerInfo) error {
	ring := c.view.current()
	if ring == nil {
		return nil
	}
	owner := ring.OwnerOf(p)
	if owner == "" {
		return nil
	}
	if ok, known := c.serves(owner, handler, local); ok || !known {
		return nil
	}
	with, without := c.servedBy(handler, local)
	return fmt.Errorf("%w: %q is not served by worker %s, which owns partition %d of key %q; workers with it: %s; workers without it: %s. Install its plugin on every worker (until then jobs for it are refused)",
		ErrHandlerNotServed, handler, owner, p, key, orNone(with), strings.Join(without, ", "))
}

// unknownEmit explains an emitted job whose handler no worker serves.
func (c *handlerCatalog) unknownEmit(parent, handler string, local map[string]host.HandlerInfo) error {
	return fmt.Errorf("job %s emitted a job for handler %q, which no worker serves (this cluster serves: %s); nothing of this attempt was committed",
		parent, handler, strings.Join(c.all(local), ", "))
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
