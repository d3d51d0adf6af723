package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/redis/go-redis/v9"
)

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// idleHandlers serves no handler: these tests move partitions, not jobs.
type idleHandlers struct{}

func (idleHandlers) Handle(context.Context, *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	return nil, errors.New("no handlers")
}
func (idleHandlers) Handlers() map[string]host.HandlerInfo    { return nil }
func (idleHandlers) Plugins() []string                        { return []string{"none@0"} }
func (idleHandlers) Reload(context.Context) ([]string, error) { return nil, nil }

// TestOwnershipDrainAndStop runs two workers against a real Redis and a
// real Consul agent: they split the partitions, a drained worker hands all
// of its partitions to the other, Locate names the holder and its epoch,
// and a stopped worker leaves every partition free with its lease gone.
func TestOwnershipDrainAndStop(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server and consul")
	}
	r := testenv.StartRedis(t)
	cs := testenv.StartConsul(t)
	rdb := r.Client(t)
	ctx := context.Background()
	start := func(id string) *Worker {
		cfg := DefaultConfig()
		cfg.ID = id
		cfg.Advertise = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		reg, err := discovery.NewConsul(discovery.ConsulConfig{Address: cs.Addr})
		if err != nil {
			t.Fatal(err)
		}
		w, err := New(cfg, rdb, reg, idleHandlers{}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		return w
	}
	held := func() map[string]int {
		out := map[string]int{}
		for p := 0; p < DefaultConfig().Ring.Partitions; p++ {
			h, err := lease.HolderOf(ctx, rdb, p)
			if err != nil {
				t.Fatal(err)
			}
			out[lease.WorkerID(h.Token)]++
		}
		return out
	}
	waitFor := func(what string, ok func(map[string]int) bool) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() error {
			if h := held(); !ok(h) {
				return fmt.Errorf("waiting for %s; holders %v", what, h)
			}
			return nil
		})
	}
	all := DefaultConfig().Ring.Partitions

	w1, w2 := start("w1"), start("w2")
	waitFor("w1 and w2 to split the partitions", func(h map[string]int) bool {
		return h["w1"] > 0 && h["w2"] > 0 && h["w1"]+h["w2"] == all
	})

	if n := w1.Drain(ctx); n == 0 {
		t.Fatal("drain released nothing")
	}
	began := time.Now()
	waitFor("w2 to hold everything", func(h map[string]int) bool { return h["w2"] == all })
	t.Logf("after the drain w2 held every partition within %v", time.Since(began).Round(time.Millisecond))
	if st, out := w1.health.check(ctx); st != discovery.StatusCritical {
		t.Fatalf("drained worker's check is %s (%s), want critical", st, out)
	}
	if w1.exec.fenced.Load()+w2.exec.fenced.Load() != 0 {
		t.Fatal("a graceful drain fenced a commit")
	}

	resp, err := w2.API().Locate(ctx, &workerpb.LocateRequest{Keys: []string{"alice", "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, loc := range resp.Locations {
		if loc.Owner != "w2" || loc.Epoch < 1 || int(loc.Partition) != w2.partitionOf(loc.Key) {
			t.Fatalf("locate %s: %+v", loc.Key, loc)
		}
	}
	if _, err := w2.API().Locate(ctx, &workerpb.LocateRequest{Keys: []string{""}}); err == nil {
		t.Fatal("locate of an empty key accepted")
	}

	w2.Stop()
	waitFor("every partition free", func(h map[string]int) bool { return h[""] == all })
	if alive, _ := lease.Alive(ctx, rdb, w2.keeper.Token()); alive {
		t.Fatal("w2's lease survives Stop")
	}
}

// startOwner starts a worker with no handlers on rdb and the Consul agent
// at consulAddr, stopped when the test ends.
func startOwner(t *testing.T, id string, rdb redis.UniversalClient, consulAddr string) *Worker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.Advertise = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	reg, err := discovery.NewConsul(discovery.ConsulConfig{Address: consulAddr})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(cfg, rdb, reg, idleHandlers{}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// TestFailedReleaseIsRetried: a worker gives partitions up to a new member,
// and Redis never hears one of those releases (the connection drops in the
// middle of it). The partition must not stay named for a live worker that
// no longer processes it: the release is tried again until Redis frees it,
// and the new member gets it.
func TestFailedReleaseIsRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server and consul")
	}
	r := testenv.StartRedis(t)
	cs := testenv.StartConsul(t)
	rdb := r.Client(t)
	px := testenv.StartProxy(t, r.Addr)
	viaProxy := redis.NewClient(&redis.Options{Addr: px.Addr, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { viaProxy.Close() })
	ctx := context.Background()
	all := DefaultConfig().Ring.Partitions
	held := func() map[string]int {
		out := map[string]int{}
		for p := 0; p < all; p++ {
			h, err := lease.HolderOf(ctx, rdb, p)
			if err != nil {
				t.Fatal(err)
			}
			out[lease.WorkerID(h.Token)]++
		}
		return out
	}

	w1 := startOwner(t, "w1", viaProxy, cs.Addr)
	testenv.Eventually(t, 20*time.Second, func() error {
		if h := held(); h["w1"] != all {
			return fmt.Errorf("w1 alone does not hold every partition: %v", h)
		}
		return nil
	})
	// The first release w1 sends is lost with its connection.
	fired := px.CutAt(lease.EventsChannel)
	w2 := startOwner(t, "w2", rdb, cs.Addr)
	select {
	case <-fired:
	case <-time.After(20 * time.Second):
		t.Fatal("w1 released nothing after w2 joined")
	}
	px.Reset()
	px.Heal()

	want := func() map[string]int {
		ring := w2.own.view.current()
		if ring == nil {
			return nil
		}
		return map[string]int{"w1": len(ring.PartitionsOf("w1")), "w2": len(ring.PartitionsOf("w2"))}
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		h, wt := held(), want()
		if wt == nil || wt["w2"] == 0 || h["w2"] != wt["w2"] || h["w1"] != wt["w1"] {
			return fmt.Errorf("after a lost release the partitions have not settled: held %v, the ring says %v; w1 processes %d", h, wt, w1.own.grants.count())
		}
		return nil
	})
}
