package tracing

import (
	"context"
	"testing"
)

// TestEnabled: traces are off unless the OTLP environment asks for them.
func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
			t.Setenv(k, tc.env[k])
		}
		if got := Enabled(); got != tc.want {
			t.Errorf("Enabled with %v = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// TestFromEnvOff: with tracing off there is no tracer, and a nil one is
// safe to shut down.
func TestFromEnvOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	tr, err := FromEnv(context.Background(), "test")
	if tr != nil || err != nil {
		t.Fatalf("FromEnv = %v, %v; want nil, nil", tr, err)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTraceparent: Parse and Format are inverse; garbage is invalid.
func TestTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := Format(Parse(tp)); got != tp {
		t.Fatalf("round trip %q, want %q", got, tp)
	}
	for _, bad := range []string{"", "00-zz", "01-4bf92f3577b34da6a3ce929d0e0e4736"} {
		if Parse(bad).IsValid() || Format(Parse(bad)) != "" {
			t.Fatalf("%q parsed as valid", bad)
		}
	}
}

// TestStartFrom: a child joins its parent's trace; a linked span starts a
// new trace that links to it.
func TestStartFrom(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tr, err := FromEnv(context.Background(), "test")
	if err != nil || tr == nil {
		t.Fatalf("FromEnv: %v, %v", tr, err)
	}
	defer tr.Shutdown(context.Background())
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, child := tr.StartFrom(context.Background(), SpanBatch, tp, false)
	child.End()
	if got := Parse(FromContext(ctx)).TraceID(); got != Parse(tp).TraceID() {
		t.Fatalf("child in trace %v, want %v", got, Parse(tp).TraceID())
	}
	ctx, linked := tr.StartFrom(context.Background(), SpanBatch, tp, true)
	linked.End()
	if got := Parse(FromContext(ctx)).TraceID(); got == Parse(tp).TraceID() || !got.IsValid() {
		t.Fatalf("linked span in trace %v: want a new one", got)
	}
}
