package worker

import (
	"sync"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
)

// stateCacheMax bounds the cache; when full it starts over.
const stateCacheMax = 1 << 14

// stateCache keeps the entity states that direct calls on this worker read
// or wrote, so the next call on a key runs without reading its state
// first. Only a partition's grant holder writes its states, and this
// worker's queue commits drop the entries of the states they write, so an
// entry is current while its grant is held; a new grant, even of the same
// epoch number, starts it over. The commit's guard compares
// the state anyway: a stale entry costs a refused commit, never a wrong
// one, and the caller forgets it then.
type stateCache struct {
	mu sync.Mutex
	m  map[store.EntityRef]cachedState
}

type cachedState struct {
	grant lease.Grant
	state []byte
	has   bool // false: the entity had no state
}

func (c *stateCache) get(ref store.EntityRef, grant lease.Grant) (state []byte, has, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[ref]
	if !ok || e.grant != grant {
		return nil, false, false
	}
	return e.state, e.has, true
}

func (c *stateCache) put(ref store.EntityRef, grant lease.Grant, state []byte, has bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= stateCacheMax {
		c.m = make(map[store.EntityRef]cachedState)
	}
	c.m[ref] = cachedState{grant: grant, state: state, has: has}
}

func (c *stateCache) forget(ref store.EntityRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, ref)
}

// committed drops the entries of the states a queue commit wrote.
func (c *stateCache) committed(writes []store.StateWrite) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return
	}
	for _, w := range writes {
		delete(c.m, w.Entity)
	}
}
