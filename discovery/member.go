package discovery

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// DefaultService is the Consul service name workers register under.
const DefaultService = "corral-worker"

// Member is one healthy worker as its peers see it.
type Member struct {
	ID      string            // the worker's ID, also its Consul service ID and its name on the ring
	Address string            // host:port of the worker's gRPC API, what peers dial
	Meta    map[string]string // the service meta the worker registered
}

// Snapshot is the membership at one moment.
type Snapshot struct {
	Members []Member // healthy (passing) members only, sorted by ID
	Index   uint64   // Consul's index of the result (a counter for Static)
	// Recovered marks the first snapshot after the watch could not reach
	// Consul. An agent that restarted may not have every member back yet:
	// members missing from it may only be registering again.
	Recovered bool
}

// Status is the state a worker reports for its own check.
type Status string

// The states of a Consul check. Only passing members are in a Snapshot.
const (
	StatusPassing  Status = api.HealthPassing
	StatusWarning  Status = api.HealthWarning
	StatusCritical Status = api.HealthCritical
)

func (s Status) valid() bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// Membership is what Consul and Static have in common: the current healthy
// members and a stream of changes.
type Membership interface {
	Healthy(ctx context.Context) ([]Member, error)
	Watch(ctx context.Context) <-chan Snapshot
}

var (
	_ Membership = (*Consul)(nil)
	_ Membership = (*Static)(nil)
)

// sameMembers reports whether two member lists, both sorted by ID, name the
// same workers at the same addresses with the same meta. Watch emits only
// when this is false, so a check's output changing does not wake anyone.
func sameMembers(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.ID == y.ID && x.Address == y.Address && maps.Equal(x.Meta, y.Meta)
	})
}

// sortMembers orders by ID, then address, so every worker sees the same
// order even if two agents carry the same ID by mistake.
func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(x, y Member) int {
		if c := strings.Compare(x.ID, y.ID); c != 0 {
			return c
		}
		return strings.Compare(x.Address, y.Address)
	})
}

// cloneMembers deep-copies, so receivers may keep or change what they get.
func cloneMembers(ms []Member) []Member {
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{ID: m.ID, Address: m.Address, Meta: maps.Clone(m.Meta)}
	}
	return out
}

// membersFromEntries turns a health query's result into sorted members. The
// address is the service's own, or the node's when the service gave none,
// as Consul's DNS interface does.
func membersFromEntries(entries []*api.ServiceEntry) []Member {
	ms := make([]Member, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		var meta map[string]string
		if len(e.Service.Meta) > 0 {
			meta = maps.Clone(e.Service.Meta)
		}
		ms = append(ms, Member{
			ID:      e.Service.ID,
			Address: net.JoinHostPort(host, strconv.Itoa(e.Service.Port)),
			Meta:    meta,
		})
	}
	sortMembers(ms)
	return ms
}

// duplicateIDs lists IDs held by more than one member of a sorted list.
func duplicateIDs(ms []Member) []string {
	var dups []string
	for i := 1; i < len(ms); i++ {
		if ms[i].ID == ms[i-1].ID && (len(dups) == 0 || dups[len(dups)-1] != ms[i].ID) {
			dups = append(dups, ms[i].ID)
		}
	}
	return dups
}
