package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
	"go.opentelemetry.io/otel/trace"
)

// Call is one job as its handler sees it: what the job is (ID, Handler,
// Key, Payload, Attempt), the state of its entity (Load, Save), its result
// (SetResult), the follow-up jobs it asks for (Emit), read-only queries of
// other entities (Query), a logger and a context.
//
// What a Call records takes effect only if the handler returns nil; it is
// then committed with the job, atomically. A Call is valid only during
// the handler invocation it was passed to: do not keep it, and do not use
// it from other goroutines (it is not safe for concurrent use).
type Call struct {
	ctx    context.Context
	job    *pluginpb.Job
	entity string
	base   *slog.Logger // the plugin's logger; log adds the job to it when first asked
	log    *slog.Logger
	host   func() (pluginpb.HostClient, error) // the host's query service

	state []byte // the entity's state, as saved by earlier jobs or Save
	// stateVal is the value state was marshalled from in this batch, when
	// it is of a plain type (plainValue); nil otherwise.
	stateVal any
	changed  bool
	result   []byte
	emits    []*pluginpb.Emit
	pubs     []*pluginpb.Publication

	broadcast bool // a broadcast handler's run: no state, no emits
}

// Context is the context of the Handle call that runs the job. It is
// cancelled when the call's deadline passes (Timeout, default 10 s for the
// whole batch, so its Deadline is the time left for this job and the ones
// after it) or when the worker gives up on the batch, e.g. as it shuts
// down. Pass it to anything that may block (Query already uses it), and
// return once it is done: a call that overruns its deadline fails as a
// whole, and the worker replaces the plugin process.
func (c *Call) Context() context.Context { return c.ctx }

// SpanContext is the span the worker runs the job under (its
// corral.plugin span) when the worker traces jobs; it is invalid
// otherwise. Context carries it too, so a handler's own spans are its
// children:
//
//	ctx, span := otel.Tracer("donations").Start(c.Context(), "charge card")
//	defer span.End()
//
// Under Serve, spans go where the worker's do: Serve sets OpenTelemetry's
// global tracer provider from the same OTEL_* environment variables.
func (c *Call) SpanContext() trace.SpanContext { return trace.SpanContextFromContext(c.ctx) }

// Job is the job exactly as the worker sent it, with the fields that have
// no method of their own, such as SubmittedAtMs: when the job was
// submitted, in Unix milliseconds (for an emitted job, when its parent
// committed; for a delayed job, when it became due). Do not modify it.
func (c *Call) Job() *pluginpb.Job { return c.job }

// ID is the job's id: unique in the cluster and the same on every attempt
// and every run. It is the submitter's id (the idempotency key: the same
// id submitted again within the dedup window, 24 h by default, does not
// run again), one the client generated, or for an emitted job its
// parent's id, "~" and the emit's index, e.g. "gift-1~0". Derive from it
// anything that must be the same on every run of the job.
func (c *Call) ID() string { return c.job.GetId() }

// Handler is the name of the handler the job was sent to, e.g.
// "donor.donate"; useful when one function serves several handlers.
func (c *Call) Handler() string { return c.job.GetHandler() }

// Key is the job's key, chosen by its submitter or emitter: the key of
// the entity whose state Load and Save read and write, and what decides
// the job's partition. It is never empty.
func (c *Call) Key() string { return c.job.GetKey() }

// Entity is the type of the entity whose state Load and Save read and
// write: the one the handler declares with the Entity option, else the
// handler name up to the first dot, "donor" for "donor.donate" (see
// plugins.EntityType).
func (c *Call) Entity() string { return c.entity }

// Attempt is 1 on the job's first attempt, 2 on the second, and so on up
// to the job's max attempts (MaxAttempts). Each failed attempt adds one
// (an error, a panic, a missed deadline); a batch run again because of
// another job's failure does not. A handler may use it to give up early,
// returning a Fail error on a late attempt. In a test that builds its
// Jobs by hand it is whatever the Job says, 0 when unset.
func (c *Call) Attempt() int { return int(c.job.GetAttempt()) }

// Payload is the job's payload as submitted or emitted: a JSON document,
// of the handler's declared shape if it declared one and the job was
// submitted (emitted jobs are not checked). Do not modify it; Decode and
// Payload[T] unmarshal it.
func (c *Call) Payload() []byte { return c.job.GetPayload() }

// Logger is the plugin's logger with the job's id, handler and key as
// attributes (job_id, handler, key). Under Serve it writes to the worker's
// log, which adds plugin=NAME and keeps each line's level. A line is
// logged on every run of the job, committed or not.
func (c *Call) Logger() *slog.Logger {
	if c.log == nil {
		c.log = c.base.With("job_id", c.job.GetId(), "handler", c.job.GetHandler(), "key", c.job.GetKey())
	}
	return c.log
}

// Decode unmarshals the JSON payload into v with encoding/json: fields
// that v lacks are ignored, and fields that the payload lacks leave v's as
// they were.
//
// An empty payload, or one that does not unmarshal into v, will never
// decode, so the error is already marked with Fail: return it as is, and
// the job is dead-lettered with "decode HANDLER payload: ..." as the
// reason. To have such jobs refused at submit instead, declare the
// payload's shape with ShapeOf of v's type: the worker then admits only
// payloads that decode into it, and, since ShapeOf declares
// NoUnknownFields, none with a field that Decode would ignore, so a
// misspelled field is refused rather than read as a zero value. Emitted
// jobs are not checked at submit.
func (c *Call) Decode(v any) error {
	p := c.job.GetPayload()
	if len(p) == 0 {
		return Failf("decode %s payload: payload is empty", c.Handler())
	}
	if err := unmarshal(p, v); err != nil {
		return Fail(fmt.Errorf("decode %s payload: %w", c.Handler(), err))
	}
	return nil
}

// Load unmarshals the state of the job's entity into v: the state
// committed before the batch, as changed by the earlier successful jobs of
// the entity in the batch and by this job's own Save. found is false, and
// v untouched, when the entity has no state yet (its first job), so v
// keeps whatever defaults it held.
//
// A state that does not unmarshal into v is an error that is not marked
// with Fail: returned as is, it retries the job, since a fixed release of
// the plugin may read the state again.
func (c *Call) Load(v any) (found bool, err error) {
	if len(c.state) == 0 {
		return false, nil
	}
	if c.stateVal != nil && loadPlain(v, c.stateVal) {
		return true, nil // what decoding c.state into v would give
	}
	if err := unmarshal(c.state, v); err != nil {
		// Not Fail: the state may be readable again once the plugin is fixed.
		return false, fmt.Errorf("load %s %q state: %w", c.entity, c.Key(), err)
	}
	return true, nil
}

// Save replaces the whole state of the job's entity with v marshalled to
// JSON, and Load returns it from then on. It takes effect only if the
// handler returns nil: then it is committed in the same atomic commit as
// the job's finished record, and the entity's later jobs, in this batch
// and after, see it. A later Save replaces an earlier one; a job that does
// not call Save leaves the state as it was. There is no delete: Save the
// zero value to reset an entity.
//
// A v that does not marshal is a Fail error. A state travels with every
// batch that touches its entity, so keep it small: a batch's request,
// payloads and states together, must fit in one gRPC message (64 MiB by
// default, worker --plugin-max-message).
func (c *Call) Save(v any) error {
	if c.broadcast {
		return Failf("save from broadcast handler %s: a broadcast has no entity state", c.Handler())
	}
	b, err := marshal(v)
	if err != nil {
		return Fail(fmt.Errorf("save %s %q state: %w", c.entity, c.Key(), err))
	}
	c.state = b
	c.stateVal = plainValue(v)
	c.changed = true
	return nil
}

// Emit asks the worker to submit a follow-up job to handler with key and
// payload, once this job commits. The payload is marshalled to JSON: pass a
// json.RawMessage to send bytes as they are; nil sends JSON null. Emit is
// how a handler changes another entity, since it writes only its own:
//
//	// credit the campaign, in the campaign's partition
//	err := c.Emit("campaign.credit", d.Campaign, Credit{AmountCents: d.AmountCents})
//
// If the handler returns nil, the emitted jobs are committed with the job,
// in the same atomic commit, and then relayed to the partitions of their
// keys (at once, or within a second when a worker failed in between),
// where they run like submitted jobs, each with its own attempts and its
// handler's options. If the handler returns an error, nothing is emitted.
//
// An emitted job's id is this job's id, "~" and the emit's index in this
// job (0, 1, ...), so a job that runs more than once emits the same ids,
// and each emitted job runs once. A job's emits to one key run in the
// order emitted.
//
// The handler may be Internal: only emitted jobs run such a handler.
// Emitted jobs skip the other checks of submit: their payload is not
// checked against the handler's shape. An emit to a handler that no worker of the
// cluster serves (a typo) fails this job's attempt when it commits:
// nothing of the attempt is kept, and the job is retried and in the end
// dead-lettered with an error naming the unknown handler. Emit itself
// returns a Fail error for an empty handler or key, or a payload that
// does not marshal.
func (c *Call) Emit(handler, key string, payload any) error {
	if c.broadcast {
		return Failf("emit %s from broadcast handler %s: a broadcast emits no jobs", handler, c.Handler())
	}
	if handler == "" {
		return Failf("emit from %s: empty handler name", c.Handler())
	}
	if key == "" {
		return Failf("emit %s from %s: empty key", handler, c.Handler())
	}
	b, err := marshal(payload)
	if err != nil {
		return Fail(fmt.Errorf("emit %s from %s: marshal payload: %w", handler, c.Handler(), err))
	}
	c.emits = append(c.emits, &pluginpb.Emit{Handler: handler, Key: key, Payload: b})
	return nil
}

// Publish sends msg, marshalled to JSON, to the subscribers of topic
// (coordinator watch TOPIC, the Go client's Subscribe) once this job
// commits:
//
//	err := c.Publish("donations", Donated{Donor: c.Key(), AmountCents: d.AmountCents})
//
// If the handler returns nil, the messages are committed with the job, in
// the same atomic commit, and delivered from then on; if it returns an
// error, or the attempt is fenced (another worker took the partition over)
// or retried, nothing of it is published, so a subscriber sees each
// committed job's messages once. A subscriber gets a topic's messages in
// commit order for each partition, so the messages of one key's jobs in
// the order the jobs ran, and a job's messages in the order published.
//
// Messages are kept for an hour (worker --topic-retention) for
// subscribers that resume after a broken connection; a topic needs no
// declaring. Publish returns a Fail error for a topic name that is empty,
// over 200 bytes or has spaces (plugins.CheckTopic), or a msg that does
// not marshal, and fails the run of a broadcast handler, which commits
// nothing.
func (c *Call) Publish(topic string, msg any) error {
	if c.broadcast {
		return Failf("publish to %s from broadcast handler %s: a broadcast commits nothing to publish with", topic, c.Handler())
	}
	if err := plugins.CheckTopic(topic); err != nil {
		return Failf("publish from %s: %v", c.Handler(), err)
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return Fail(fmt.Errorf("publish to %s from %s: marshal message: %w", topic, c.Handler(), err))
	}
	c.pubs = append(c.pubs, &pluginpb.Publication{Topic: topic, Message: b})
	return nil
}

// SetResult sets the job's result to v marshalled to JSON, for whoever
// waits on the job: coordinator submit --wait and coordinator result, the
// Go client's Results, and the reply of a Call (coordinator call). A
// later SetResult replaces an earlier one; a job that never calls it has
// no result.
//
// The result takes effect only if the handler returns nil: then it is
// committed in the job's record and kept for 24 h (worker
// --result-retention). A failed job has no result: its dead letter keeps
// its error history instead; nor has a rejected one, whose answer is the
// reason it was rejected with (Reject). A v that does not marshal is a
// Fail error.
func (c *Call) SetResult(v any) error {
	b, err := marshal(v)
	if err != nil {
		return Fail(fmt.Errorf("set %s result: %w", c.Handler(), err))
	}
	c.result = b
	return nil
}
