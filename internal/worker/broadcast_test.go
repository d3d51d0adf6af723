package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// memBroadcasts is broadcastStore in memory.
type memBroadcasts struct {
	mu  sync.Mutex
	rec map[string]*store.BroadcastRecord
}

func (m *memBroadcasts) ClaimBroadcast(_ context.Context, member, id string, _ time.Duration) (bool, store.BroadcastRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.rec[member+"/"+id]; ok {
		return false, *r, nil
	}
	m.rec[member+"/"+id] = &store.BroadcastRecord{}
	return true, store.BroadcastRecord{}, nil
}

func (m *memBroadcasts) FinishBroadcast(_ context.Context, member, id string, result []byte, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rec[member+"/"+id] = &store.BroadcastRecord{Done: true, Result: result}
	return nil
}

func (m *memBroadcasts) ForgetBroadcast(_ context.Context, member, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rec, member+"/"+id)
	return nil
}

// countingPlugin serves cache.reload (broadcast) and donor.donate; it
// fails the runs whose payload is "fail".
type countingPlugin struct {
	idleHandlers
	mu   sync.Mutex
	runs int
}

func (p *countingPlugin) Handlers() map[string]host.HandlerInfo {
	return map[string]host.HandlerInfo{"cache.reload": {Broadcast: true}, "donor.donate": {}}
}

func (p *countingPlugin) Handle(_ context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	p.mu.Lock()
	p.runs++
	p.mu.Unlock()
	j := req.Jobs[0]
	if string(j.Payload) == `"fail"` {
		return &pluginpb.HandleResponse{Outcomes: []*pluginpb.Outcome{{JobId: j.Id, Status: pluginpb.Outcome_RETRY, Error: "reload failed"}}}, nil
	}
	return &pluginpb.HandleResponse{Outcomes: []*pluginpb.Outcome{{JobId: j.Id, Status: pluginpb.Outcome_OK, Result: []byte(`"ok"`)}}}, nil
}

// deadPeers reaches nobody.
type deadPeers struct{}

func (deadPeers) CallDirect(context.Context, string, func(context.Context, workerpb.WorkerClient) error) error {
	return errors.New("connection refused")
}

// TestBroadcastRunsOncePerID: a member runs an id once; a failed run may
// run again; a job handler is refused; an unreachable member is reported.
func TestBroadcastRunsOncePerID(t *testing.T) {
	t.Parallel()
	plugin := &countingPlugin{}
	view := newMembership(Config{ID: "w1"}, slog.New(slog.DiscardHandler))
	view.observe(discovery.Snapshot{Members: []discovery.Member{
		{ID: "w1", Meta: map[string]string{metaGroups: "cache"}},
		{ID: "w2", Address: "w2:1", Meta: map[string]string{metaGroups: "cache"}},
		{ID: "w3", Address: "w3:1"},
	}})
	b := &broadcaster{self: "w1", log: slog.New(slog.DiscardHandler), view: view, peers: deadPeers{},
		store: &memBroadcasts{rec: map[string]*store.BroadcastRecord{}}, plugins: plugin, retention: time.Hour, maxPayload: 1 << 20}
	ctx := context.Background()
	run := func(id, payload string) workerpb.BroadcastMemberResult_Outcome {
		return b.run(ctx, &workerpb.RunBroadcastRequest{Handler: "cache.reload", Id: id, Payload: []byte(payload)}).Outcome
	}
	if o := run("b1", `{}`); o != workerpb.BroadcastMemberResult_RAN {
		t.Fatalf("first run: %v", o)
	}
	if o := run("b1", `{}`); o != workerpb.BroadcastMemberResult_ALREADY {
		t.Fatalf("the same id again: %v", o)
	}
	if o := run("b2", `"fail"`); o != workerpb.BroadcastMemberResult_FAILED {
		t.Fatalf("a failing run: %v", o)
	}
	if o := run("b2", `{}`); o != workerpb.BroadcastMemberResult_RAN {
		t.Fatalf("a failed id sent again: %v", o)
	}
	if plugin.runs != 3 {
		t.Errorf("the plugin ran %d times, want 3", plugin.runs)
	}
	r := b.run(ctx, &workerpb.RunBroadcastRequest{Handler: "donor.donate", Id: "b3"})
	if r.Outcome != workerpb.BroadcastMemberResult_FAILED {
		t.Errorf("a job handler broadcast: %v", r)
	}
	resp, err := b.broadcast(ctx, &workerpb.BroadcastRequest{Group: "cache", Handler: "cache.reload", Id: "b4", TimeoutMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 2 || resp.Members[0].Outcome != workerpb.BroadcastMemberResult_RAN ||
		resp.Members[1].Member != "w2" || resp.Members[1].Outcome != workerpb.BroadcastMemberResult_UNREACHABLE {
		t.Errorf("broadcast to group cache: %v", resp.Members)
	}
	if _, err := b.broadcast(ctx, &workerpb.BroadcastRequest{Group: "nobody", Handler: "cache.reload"}); err == nil {
		t.Error("a broadcast to an empty group was accepted")
	}
	if _, err := b.broadcast(ctx, &workerpb.BroadcastRequest{Handler: "donor.donate"}); err == nil {
		t.Error("a broadcast of a job handler was accepted")
	}
}
