// Package tracing is Corral's OpenTelemetry tracing: off unless the
// standard OTLP environment variables ask for it, and then one OTLP/HTTP
// exporter per process. A nil *Tracer is tracing off, and every method is
// safe on it, so call sites pay one nil check and nothing else.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.24.0"
	"go.opentelemetry.io/otel/trace"
)

// Span names, one per step of a job's path.
const (
	SpanSubmit  = "corral.submit"  // the client's submission
	SpanEnqueue = "corral.enqueue" // the worker's intake: validate and enqueue
	SpanBatch   = "corral.batch"   // one job's run in its partition's batch
	SpanPlugin  = "corral.plugin"  // the plugin call that ran it
	SpanCommit  = "corral.commit"  // the fenced commit of its batch
)

// Attribute keys on Corral's spans.
const (
	AttrJobID     = attribute.Key("corral.job.id")
	AttrHandler   = attribute.Key("corral.job.handler")
	AttrKey       = attribute.Key("corral.job.key")
	AttrPartition = attribute.Key("corral.partition")
	AttrAttempt   = attribute.Key("corral.job.attempt")
	AttrBatchSize = attribute.Key("corral.batch.size")
	AttrParentJob = attribute.Key("corral.job.parent")
)

// Enabled reports whether the environment asks for traces: when
// OTEL_TRACES_EXPORTER is "otlp", or when it is unset and
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set. OTEL_TRACES_EXPORTER=none and OTEL_SDK_DISABLED=true turn it off.
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); {
	case strings.EqualFold(exp, "otlp"):
		return true
	case exp != "":
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Endpoint is where traces go, for the log: the traces endpoint, else the
// OTLP endpoint, else the exporter's default.
func Endpoint() string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if e := os.Getenv(v); e != "" {
			return e
		}
	}
	return "https://localhost:4318"
}

// LogErrors sends OpenTelemetry's own errors (an export that failed, a
// full queue) to log instead of the standard logger.
func LogErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
}

// Tracer starts Corral's spans. nil is tracing off.
type Tracer struct {
	tp *sdktrace.TracerProvider
	t  trace.Tracer
}

// FromEnv starts an OTLP/HTTP exporter configured by the standard
// OTEL_EXPORTER_OTLP_* variables when Enabled, and returns nil (tracing
// off) otherwise. service is the service name unless OTEL_SERVICE_NAME
// sets another. Shutdown flushes what is buffered.
func FromEnv(ctx context.Context, service string) (*Tracer, error) {
	if !Enabled() {
		return nil, nil
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto != "" && proto != "http/protobuf" {
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: Corral exports OTLP over HTTP (http/protobuf, port 4318 of a collector)", proto)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default.
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracer{tp: tp, t: tp.Tracer("github.com/corralhq/corral")}, nil
}

// Provider is the tracer provider, for a process's own spans.
func (t *Tracer) Provider() trace.TracerProvider { return t.tp }

// Shutdown flushes the spans not exported yet and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Start starts a span named name as a child of ctx's span.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.t.Start(ctx, name, trace.WithAttributes(attrs...))
}

// StartFrom starts a span named name under the traceparent tp: as its
// child, or, when link is set, as the root of a new trace that links to
// it (a job emitted by another job). An empty or malformed tp starts a
// new trace.
func (t *Tracer) StartFrom(ctx context.Context, name, tp string, link bool, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	sc := Parse(tp)
	switch {
	case !sc.IsValid():
		opts = append(opts, trace.WithNewRoot())
	case link:
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sc}))
	default:
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return t.t.Start(ctx, name, opts...)
}

// Parse reads a W3C traceparent; the result is invalid when tp is not one.
func Parse(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return trace.SpanContextFromContext(ctx)
}

// Format is the W3C traceparent of sc, "" when sc is not valid.
func Format(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
	return c["traceparent"]
}

// FromContext is the traceparent of ctx's span, "" when it has none.
func FromContext(ctx context.Context) string {
	return Format(trace.SpanContextFromContext(ctx))
}

// Fail marks a span failed with err.
func Fail(s trace.Span, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
}
