package sdk

import (
	"context"
	"testing"

	"github.com/corralhq/corral/plugins/pluginpb"
	"go.opentelemetry.io/otel/trace"
)

// TestCallCarriesSpan: a traced job's Call has the worker's span in its
// Context, for the handler's own spans; an untraced job's has none.
func TestCallCarriesSpan(t *testing.T) {
	t.Parallel()
	var got []trace.SpanContext
	p := New("t", "1", Handler("t.look", func(c *Call) error {
		if !trace.SpanContextFromContext(c.Context()).Equal(c.SpanContext()) {
			t.Error("Context and SpanContext disagree")
		}
		got = append(got, c.SpanContext())
		return nil
	}))
	traced := job("1", "t.look", "k", "{}")
	traced.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := p.Handle(context.Background(), &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{traced, job("2", "t.look", "k", "{}")}}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || got[0].SpanID().String() != "00f067aa0ba902b7" || !got[0].IsRemote() {
		t.Fatalf("traced job's span context %+v", got)
	}
	if got[1].IsValid() {
		t.Fatalf("untraced job's span context %+v, want none", got[1])
	}
}
