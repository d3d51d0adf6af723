package store

import (
	"errors"
	"sync"

	"github.com/corralhq/corral/internal/lease"
)

// ErrLostCommits means Redis no longer has a commit this worker saw
// acknowledged under its grant (it lost writes: a restore, a replica
// promoted behind the primary). The batch was built on state Redis no
// longer has; it is refused, wrapped with lease.ErrFenced, so the worker
// gives the partition up and starts it afresh under a new grant.
var ErrLostCommits = errors.New("Redis lost commits acknowledged under this grant")

// commitsSeen remembers, per partition, how many commits this process saw
// acknowledged under the grant it holds, for the commit script to check
// that Redis still has them all.
type commitsSeen struct {
	mu sync.Mutex
	m  map[int]grantCommits
}

type grantCommits struct {
	grant lease.Grant
	n     int64
}

// seen is how many commits under grant were acknowledged in partition p.
func (c *commitsSeen) seen(p int, grant lease.Grant) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gc, ok := c.m[p]; ok && gc.grant == grant {
		return gc.n
	}
	return 0
}

// saw records that Redis counted n commits under grant in partition p.
func (c *commitsSeen) saw(p int, grant lease.Grant, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]grantCommits{}
	}
	if gc, ok := c.m[p]; !ok || gc.grant != grant || gc.n < n {
		c.m[p] = grantCommits{grant: grant, n: n}
	}
}
