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

// checkEntity refuses an entity type that is not among known, the ones
// the cluster's handlers read and write, naming them: a misspelled entity
// would otherwise read as "no state".
func checkEntity(entity string, known []string) error {
	switch {
	case len(known) == 0:
		return fmt.Errorf("%w %q: the cluster serves no handlers", ErrUnknownEntity, entity)
	case entity == "":
		return fmt.Errorf("entity type is empty (this cluster's entities: %s)", strings.Join(known, ", "))
	case !slices.Contains(known, entity):
		return fmt.Errorf("%w %q (this cluster's entities: %s)", ErrUnknownEntity, entity, strings.Join(known, ", "))
	}
	return nil
}
