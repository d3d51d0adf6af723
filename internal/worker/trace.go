package worker

import (
	"context"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/plugins/pluginpb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// batchTrace is the tracing of one partition batch: per job run, a
// corral.batch span under the job's traceparent (for an emitted job, the
// root of a new trace linked to its parent's batch span), with the plugin
// call and the commit as its children. nil is tracing off.
type batchTrace struct {
	tracer *tracing.Tracer
	spans  map[string]jobSpan // by job id
}

type jobSpan struct {
	ctx  context.Context
	span trace.Span
}

// startBatchTrace starts the batch spans of the jobs a batch runs; nil
// when tr is (tracing off).
func startBatchTrace(ctx context.Context, tr *tracing.Tracer, p int, jobs []store.Job) *batchTrace {
	if tr == nil || len(jobs) == 0 {
		return nil
	}
	bt := &batchTrace{tracer: tr, spans: make(map[string]jobSpan, len(jobs))}
	for _, j := range jobs {
		attrs := []attribute.KeyValue{tracing.AttrJobID.String(j.ID), tracing.AttrHandler.String(j.Handler),
			tracing.AttrPartition.Int(p), tracing.AttrAttempt.Int(j.Attempt), tracing.AttrBatchSize.Int(len(jobs))}
		parent, _, emitted := store.ParentID(j.ID)
		if emitted {
			attrs = append(attrs, tracing.AttrParentJob.String(parent))
		}
		sctx, span := tr.StartFrom(ctx, tracing.SpanBatch, j.Trace, emitted, attrs...)
		bt.spans[j.ID] = jobSpan{sctx, span}
	}
	return bt
}

// startPlugin starts a corral.plugin span per job of a plugin call and
// hands each job's span to the plugin as its traceparent.
func (bt *batchTrace) startPlugin(req *pluginpb.HandleRequest) []trace.Span {
	if bt == nil {
		return nil
	}
	out := make([]trace.Span, 0, len(req.Jobs))
	for _, j := range req.Jobs {
		js, ok := bt.spans[j.Id]
		if !ok {
			continue
		}
		sctx, span := bt.tracer.Start(js.ctx, tracing.SpanPlugin, tracing.AttrJobID.String(j.Id),
			tracing.AttrHandler.String(j.Handler), attribute.Int("corral.plugin.jobs", len(req.Jobs)))
		j.Traceparent = tracing.FromContext(sctx)
		out = append(out, span)
	}
	return out
}

// endSpans ends spans of a step (a plugin call, a commit) that returned err.
func endSpans(spans []trace.Span, err error) {
	for _, s := range spans {
		tracing.Fail(s, err)
		s.End()
	}
}

// emits has each emitted job carry its parent's batch span, which the
// emitted job's own batch span links to.
func (bt *batchTrace) emits(b *store.Batch) {
	if bt == nil {
		return
	}
	for i := range b.Emits {
		parent, _, ok := store.ParentID(b.Emits[i].ID)
		if js, found := bt.spans[parent]; ok && found {
			b.Emits[i].Trace = tracing.FromContext(js.ctx)
		}
	}
}

// startCommit starts a corral.commit span per job of the batch.
func (bt *batchTrace) startCommit(p int) []trace.Span {
	if bt == nil {
		return nil
	}
	out := make([]trace.Span, 0, len(bt.spans))
	for id, js := range bt.spans {
		_, span := bt.tracer.Start(js.ctx, tracing.SpanCommit, tracing.AttrJobID.String(id), tracing.AttrPartition.Int(p))
		out = append(out, span)
	}
	return out
}

// end ends the batch spans with what became of each job: its outcome, or
// err when the batch did not commit.
func (bt *batchTrace) end(outcomes map[string]*pluginpb.Outcome, err error) {
	if bt == nil {
		return
	}
	for id, js := range bt.spans {
		if o := outcomes[id]; o != nil && o.Status != pluginpb.Outcome_STATUS_UNSPECIFIED {
			js.span.SetAttributes(attribute.String("corral.job.outcome", o.Status.String()))
		}
		tracing.Fail(js.span, err)
		js.span.End()
	}
}
