package discovery

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strconv"
	"sync"
)

// Static is an in-memory membership for unit tests. Set replaces the
// members; Register and SetHealth add the caller itself the way Consul
// would (a member only while its status is passing), so Static can stand
// in for Consul wherever a worker's registry is needed.
type Static struct {
	mu      sync.Mutex
	members []Member      // as given to Set, sorted
	self    *Registration // from Register; nil when not registered
	status  Status        // of self
	index   uint64        // bumped on every change
	changed chan struct{} // closed and replaced on every change
}

// NewStatic starts with the given members, all of them healthy.
func NewStatic(members ...Member) *Static {
	s := &Static{changed: make(chan struct{}), index: 1}
	s.members = cloneMembers(members)
	sortMembers(s.members)
	return s
}

// Set replaces the healthy members (the registered self stays).
func (s *Static) Set(members ...Member) {
	ms := cloneMembers(members)
	sortMembers(ms)
	s.mu.Lock()
	s.members = ms
	s.bumpLocked()
	s.mu.Unlock()
}

// Healthy returns the current members, sorted by ID.
func (s *Static) Healthy(ctx context.Context) ([]Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	snap, _ := s.current()
	return snap.Members, nil
}

// Watch emits the current members at once and then every change of them,
// like Consul.Watch. The channel closes when ctx ends.
func (s *Static) Watch(ctx context.Context) <-chan Snapshot {
	ch := make(chan Snapshot)
	go func() {
		defer close(ch)
		var last []Member
		sent := false
		for {
			snap, changed := s.current()
			if !sent || !sameMembers(last, snap.Members) {
				select {
				case ch <- snap:
				case <-ctx.Done():
					return
				}
				last, sent = cloneMembers(snap.Members), true
				continue // look again: it may have changed while we waited
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// Register adds the caller with a critical status, as Consul does; as
// with Consul, registering the same ID again (new meta) keeps its status.
func (s *Static) Register(ctx context.Context, reg Registration) error {
	if reg.ID == "" {
		return fmt.Errorf("discovery: register: the worker ID is empty")
	}
	reg.Meta = maps.Clone(reg.Meta)
	s.mu.Lock()
	if s.self == nil || s.self.ID != reg.ID {
		s.status = StatusCritical
	}
	s.self = &reg
	s.bumpLocked()
	s.mu.Unlock()
	return nil
}

// SetHealth sets the registered caller's status; passing makes it a member.
func (s *Static) SetHealth(ctx context.Context, st Status, output string) error {
	if !st.valid() {
		return fmt.Errorf("discovery: set health: unknown status %q", st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.self == nil {
		return ErrNotRegistered
	}
	if st != s.status {
		s.status = st
		s.bumpLocked()
	}
	return nil
}

// Deregister removes the registered caller. Safe to call twice.
func (s *Static) Deregister(ctx context.Context) error {
	s.mu.Lock()
	if s.self != nil {
		s.self = nil
		s.bumpLocked()
	}
	s.mu.Unlock()
	return nil
}

func (s *Static) bumpLocked() {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
}

// current is the snapshot now and the channel that closes on the next
// change.
func (s *Static) current() (Snapshot, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := cloneMembers(s.members)
	if s.self != nil && s.status == StatusPassing {
		ms = append(ms, Member{
			ID:      s.self.ID,
			Address: net.JoinHostPort(s.self.Address, strconv.Itoa(s.self.Port)),
			Meta:    maps.Clone(s.self.Meta),
		})
		sortMembers(ms)
	}
	return Snapshot{Members: ms, Index: s.index}, s.changed
}
