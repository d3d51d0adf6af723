package worker

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
)

// ErrUnknownEntity means no handler declares the entity type asked for.
var ErrUnknownEntity = errors.New("unknown entity")

// entityOf maps a handler to the entity type its jobs read and write, as
// the handlers declared it; a handler no plugin serves gets its name's
// prefix (plugins.EntityType).
func entityOf(hs map[string]host.HandlerInfo) func(handler string) string {
	return func(handler string) string {
		if e := hs[handler].Entity; e != "" {
			return e
		}
		return plugins.EntityType(handler)
	}
}

// knownEntities lists the entity types the handlers read and write, sorted.
func knownEntities(hs map[string]host.HandlerInfo) []string {
	entity := entityOf(hs)
	out := make([]string, 0, len(hs))
	for name := range hs {
		if e := entity(name); !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// checkEntity refuses an entity type no handler declares, naming the ones
// that are: a misspelled entity would otherwise read as "no state".
func checkEntity(entity string, hs map[string]host.HandlerInfo) error {
	known := knownEntities(hs)
	switch {
	case len(known) == 0:
		return fmt.Errorf("%w %q: this worker serves no handlers", ErrUnknownEntity, entity)
	case entity == "":
		return fmt.Errorf("entity type is empty (this cluster's entities: %s)", strings.Join(known, ", "))
	case !slices.Contains(known, entity):
		return fmt.Errorf("%w %q (this cluster's entities: %s)", ErrUnknownEntity, entity, strings.Join(known, ", "))
	}
	return nil
}
