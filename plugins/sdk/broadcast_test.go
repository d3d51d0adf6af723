package sdk

import (
	"context"
	"testing"
	"time"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// TestBroadcastAndTTLDeclarations: Describe carries a handler's state TTL
// and broadcast declarations, and a broadcast run sees no state and may
// not save or emit.
func TestBroadcastAndTTLDeclarations(t *testing.T) {
	t.Parallel()
	var loaded bool
	p := New("caches", "1",
		Handler("session.touch", func(*Call) error { return nil }, StateTTL(90*time.Second)),
		Handler("cache.invalidate", func(c *Call) error {
			var v map[string]any
			loaded, _ = c.Load(&v)
			return c.SetResult(map[string]string{"id": c.ID()})
		}, Broadcast()),
		Handler("cache.bad", func(c *Call) error { return c.Save(1) }, Broadcast()),
	)
	resp, err := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hs := resp.GetHandlers()
	if hs[0].GetStateTtlMs() != 90000 || hs[0].GetBroadcast() || !hs[1].GetBroadcast() || hs[1].GetStateTtlMs() != 0 {
		t.Fatalf("Describe = %v", hs)
	}
	out := handle(t, p, &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "cache", Key: "", State: []byte(`{"x":1}`)}},
		Jobs:     []*pluginpb.Job{{Id: "b1", Handler: "cache.invalidate"}, {Id: "b1", Handler: "cache.bad"}},
	})
	if out[0].GetStatus() != pluginpb.Outcome_OK || string(out[0].GetResult()) != `{"id":"b1"}` || loaded {
		t.Errorf("broadcast run: %v (loaded state: %v)", out[0], loaded)
	}
	if out[1].GetStatus() != pluginpb.Outcome_FAIL {
		t.Errorf("a broadcast that saves: %v, want FAIL", out[1])
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted a broadcast handler with a state TTL")
		}
	}()
	New("x", "1", Handler("a.b", func(*Call) error { return nil }, Broadcast(), StateTTL(time.Second)))
}

// A broadcast commits nothing, so it has nothing to publish with, and no
// topic's messages can be its jobs.
func TestBroadcastNeitherPublishesNorSubscribes(t *testing.T) {
	t.Parallel()
	p := New("caches", "1", Handler("cache.shout", func(c *Call) error { return c.Publish("caches", 1) }, Broadcast()))
	out := handle(t, p, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{{Id: "b1", Handler: "cache.shout"}}})
	if out[0].GetStatus() != pluginpb.Outcome_FAIL || len(out[0].GetPublications()) != 0 {
		t.Errorf("a broadcast that publishes: %v, want FAIL", out[0])
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted a broadcast handler that subscribes to a topic")
		}
	}()
	New("x", "1", Handler("a.b", func(*Call) error { return nil }, Broadcast(), Subscribe("caches")))
}
