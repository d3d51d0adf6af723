package worker

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fakes of what the reporter reads. Its peer pool, membership view, executor
// and ownership are concrete types: the tests build real ones, with no
// network but the loopback peers of TestClusterStatus.

// depthStore answers queue depths from a map and records what it was asked.
type depthStore struct {
	mu    sync.Mutex
	depth map[int]int64
	err   error
	asked [][]int
}

func (d *depthStore) Depth(_ context.Context, parts []int) (map[int]int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked = append(d.asked, slices.Clone(parts))
	if d.err != nil {
		return nil, d.err
	}
	out := map[int]int64{}
	for _, p := range parts {
		if n, ok := d.depth[p]; ok {
			out[p] = n
		}
	}
	return out, nil
}

// Backlogs answers the depths as queued jobs.
func (d *depthStore) Backlogs(ctx context.Context, parts []int) (map[int]store.Backlog, error) {
	depth, err := d.Depth(ctx, parts)
	out := map[int]store.Backlog{}
	for p, n := range depth {
		out[p] = store.Backlog{Queued: n}
	}
	return out, err
}

func (d *depthStore) OldestOutbox(context.Context, []int) (time.Time, error) { return time.Time{}, nil }

type fixedMembers struct {
	members []discovery.Member
	err     error
}

func (f fixedMembers) Healthy(context.Context) ([]discovery.Member, error) { return f.members, f.err }

// fixedHolders answers claims from a map and records what it was asked.
type fixedHolders struct {
	holders map[int]lease.Holder
	err     error
	asked   *[]int
}

func (f fixedHolders) HoldersOf(_ context.Context, parts []int) (map[int]lease.Holder, error) {
	if f.asked != nil {
		*f.asked = append(*f.asked, parts...)
	}
	if f.err != nil {
		return nil, f.err
	}
	out := map[int]lease.Holder{}
	for _, p := range parts {
		out[p] = f.holders[p]
	}
	return out, nil
}

type leaseLeft time.Duration

func (l leaseLeft) Remaining() time.Duration { return time.Duration(l) }

// statusPlugins is a plugin host that reports, and runs nothing.
type statusPlugins struct {
	idleHandlers
	degraded bool
}

func (statusPlugins) Plugins() []string          { return []string{"donations@1.0.0"} }
func (s statusPlugins) Degraded() (bool, string) { return s.degraded, "donations restarted too often" }
func (statusPlugins) Restarts() int64            { return 3 }

// testReporter is a reporter of worker w1 with no partition, no peer and
// no member; tests fill in what they read.
func testReporter(t *testing.T) *reporter {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.Advertise = "w1", "10.0.0.1:7000"
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	bc := breaker.DefaultConfig()
	bc.FailureThreshold, bc.OpenTimeout = 1, time.Hour
	peers, err := peer.NewPool(bc, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peers.Close)
	return &reporter{cfg: cfg, store: &depthStore{}, registry: fixedMembers{}, holders: fixedHolders{},
		peers: peers, grants: fakeGrants{}, view: newMembership(cfg, log), exec: &executor{}, own: &ownership{},
		lease: leaseLeft(time.Second), handlers: statusPlugins{}}
}

// TestMemberStatus: a worker describes its partitions in order with their
// grants and depths, its counters, draining, lease, plugins and breakers.
func TestMemberStatus(t *testing.T) {
	t.Parallel()
	r := testReporter(t)
	st := &depthStore{depth: map[int]int64{2: 5, 9: 0}}
	r.store = st
	r.grants = fakeGrants{9: lease.Grant{Epoch: 4}, 2: lease.Grant{Epoch: 3}}
	r.exec.committed.Store(40)
	r.exec.fenced.Store(1)
	r.own.draining.Store(true)
	r.lease = leaseLeft(-time.Second) // past its deadline
	r.handlers = statusPlugins{degraded: true}
	// One failure opens a breaker here.
	_ = r.peers.Breakers().Do(context.Background(), "10.0.0.2:7000", func(context.Context) error { return errors.New("down") })

	ms, err := r.memberStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.asked; len(got) != 1 || !slices.Equal(got[0], []int{2, 9}) {
		t.Errorf("depths asked for %v, want the owned partitions [2 9] once", got)
	}
	want := []*workerpb.PartitionStatus{{Partition: 2, Epoch: 3, Depth: 5}, {Partition: 9, Epoch: 4, Depth: 0}}
	if !slices.EqualFunc(ms.Partitions, want, func(a, b *workerpb.PartitionStatus) bool {
		return a.Partition == b.Partition && a.Epoch == b.Epoch && a.Depth == b.Depth
	}) {
		t.Errorf("partitions %v, want %v", ms.Partitions, want)
	}
	if ms.Id != "w1" || ms.Address != "10.0.0.1:7000" || ms.Committed != 40 || ms.Fenced != 1 || !ms.Draining {
		t.Errorf("status %v, want w1 at 10.0.0.1:7000, 40 committed, 1 fenced, draining", ms)
	}
	if ms.LeaseRemainingMs != 0 {
		t.Errorf("lease remaining %dms for a lease past its deadline, want 0", ms.LeaseRemainingMs)
	}
	if !slices.Equal(ms.Plugins, []string{"donations@1.0.0"}) || !ms.Degraded || ms.PluginRestarts != 3 {
		t.Errorf("plugins %v degraded %v restarts %d, want donations@1.0.0, degraded, 3", ms.Plugins, ms.Degraded, ms.PluginRestarts)
	}
	if want := map[string]string{"10.0.0.2:7000": "open"}; !maps.Equal(ms.Breakers, want) {
		t.Errorf("breakers %v, want %v", ms.Breakers, want)
	}

	st.err = errors.New("redis down")
	if _, err := r.memberStatus(context.Background()); !errors.Is(err, st.err) {
		t.Errorf("with Redis down memberStatus returned %v, want its error", err)
	}
}

// statusPeer is a peer worker that answers Status with itself.
type statusPeer struct {
	workerpb.UnimplementedWorkerServer
	id string
}

func (p statusPeer) Status(context.Context, *workerpb.StatusRequest) (*workerpb.StatusResponse, error) {
	return &workerpb.StatusResponse{Members: []*workerpb.MemberStatus{{Id: p.id, Address: "the address it listens on", Committed: 7}}}, nil
}

// servePeer serves a statusPeer on a loopback port until the test ends.
func servePeer(t *testing.T, id string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	workerpb.RegisterWorkerServer(s, statusPeer{id: id})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClusterStatus: each healthy member is asked for its status, under
// the address the registry gives; a member that cannot be reached is
// listed with the error; the depth is the cluster's total.
func TestClusterStatus(t *testing.T) {
	t.Parallel()
	r := testReporter(t)
	up, down := servePeer(t, "w2"), closedAddr(t)
	r.registry = fixedMembers{members: []discovery.Member{{ID: "w2", Address: up}, {ID: "w3", Address: down}}}
	st := &depthStore{depth: map[int]int64{0: 2, 17: 3}}
	r.store = st
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := r.clusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.cfg.Ring.Partitions; resp.Partitions != int32(n) || len(st.asked) != 1 || len(st.asked[0]) != n {
		t.Errorf("partitions %d, depths asked for %v; want all %d", resp.Partitions, st.asked, n)
	}
	if resp.TotalDepth != 5 {
		t.Errorf("total depth %d, want 5", resp.TotalDepth)
	}
	if len(resp.Members) != 2 {
		t.Fatalf("members %v, want w2 and w3", resp.Members)
	}
	if m := resp.Members[0]; m.Id != "w2" || m.Address != up || m.Committed != 7 || m.Error != "" {
		t.Errorf("w2 reported %v, want its own status at %s", m, up)
	}
	if m := resp.Members[1]; m.Id != "w3" || m.Address != down || m.Error == "" {
		t.Errorf("unreachable w3 reported %v, want it at %s with the error", m, down)
	}

	r.registry = fixedMembers{err: errors.New("consul down")}
	if _, err := r.clusterStatus(ctx); err == nil {
		t.Error("clusterStatus succeeded without the member list")
	}
}

// TestLocate: a key's partition, the holder Redis names with its epoch
// and address, and the owner this worker's ring names; an invalid key is
// refused before anything is read, and a failed read is Unavailable.
func TestLocate(t *testing.T) {
	t.Parallel()
	r := testReporter(t)
	parts := r.cfg.Ring.Partitions
	pa, pb := sharding.PartitionOf("alice", parts), sharding.PartitionOf("bob", parts)
	var asked []int
	r.holders = fixedHolders{holders: map[int]lease.Holder{pa: {Token: "w2~n1", Grant: lease.Grant{Epoch: 7}}}, asked: &asked}
	ring, err := sharding.NewRing(r.cfg.Ring, []string{"w1", "w2"})
	if err != nil {
		t.Fatal(err)
	}
	r.view.ring.Store(ring)
	r.view.addrs.Store(&map[string]string{"w1": "10.0.0.1:7000", "w2": "10.0.0.2:7000"})

	locs, err := r.locate(context.Background(), []string{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != 2 {
		t.Fatalf("locations %v, want alice and bob", locs)
	}
	if l := locs[0]; l.Key != "alice" || l.Partition != int32(pa) || l.Epoch != 7 || l.Owner != "w2" ||
		l.OwnerAddress != "10.0.0.2:7000" || l.RingOwner != ring.OwnerOf(pa) {
		t.Errorf("alice at %v, want partition %d held by w2 (10.0.0.2:7000) under epoch 7, ring owner %s", l, pa, ring.OwnerOf(pa))
	}
	if l := locs[1]; l.Key != "bob" || l.Partition != int32(pb) || l.Owner != "" || l.OwnerAddress != "" || l.RingOwner != ring.OwnerOf(pb) {
		t.Errorf("bob at %v, want partition %d held by nobody, ring owner %s", l, pb, ring.OwnerOf(pb))
	}

	asked = nil
	if _, err := r.locate(context.Background(), []string{"alice", ""}); status.Code(err) != codes.InvalidArgument || len(asked) != 0 {
		t.Errorf("an empty key: %v, holders read for %v; want InvalidArgument and no read", err, asked)
	}
	r.holders = fixedHolders{err: errors.New("redis down")}
	if _, err := r.locate(context.Background(), []string{"alice"}); status.Code(err) != codes.Unavailable {
		t.Errorf("with Redis down: %v, want Unavailable", err)
	}
}

// TestServiceMeta: the Consul meta names the partitions, the version and
// the handler set, the metrics address and tag only when metrics are
// served, and the groups joined, in the meta and as tags.
func TestServiceMeta(t *testing.T) {
	t.Parallel()
	r := testReporter(t)
	want := map[string]string{"partitions": strconv.Itoa(r.cfg.Ring.Partitions), "version": Version}
	check := func(what string) {
		t.Helper()
		got, err := r.serviceMeta()
		if err != nil {
			t.Fatalf("meta %s: %v", what, err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("meta %s: %s = %q, want %q (all: %v)", what, k, got[k], v, got)
			}
		}
		if _, ok := want["metrics"]; !ok && got["metrics"] != "" {
			t.Errorf("meta %s names metrics %q", what, got["metrics"])
		}
		if got["handler-set"] == "" {
			t.Errorf("meta %s has no handler-set: %v", what, got)
		}
	}
	check("without metrics")
	if got := r.serviceTags(); !slices.Equal(got, []string{"corral-worker"}) {
		t.Errorf("tags %v without metrics", got)
	}
	r.metrics = &workerMetrics{addr: "10.0.0.1:9100"}
	want["metrics"] = "10.0.0.1:9100"
	want["ui"] = "http://10.0.0.1:9100/ui/"
	check("with metrics")
	if got := r.serviceTags(); !slices.Equal(got, []string{"corral-worker", "metrics"}) {
		t.Errorf("tags %v with metrics", got)
	}
	r.cfg.Groups = []string{"cache", "web"}
	want[metaGroups] = "cache,web"
	check("with groups")
	if got := r.serviceTags(); !slices.Equal(got, []string{"corral-worker", "metrics", "group:cache", "group:web"}) {
		t.Errorf("tags %v with groups", got)
	}
}
