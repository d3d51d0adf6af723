package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// HandlerFunc is the code of a handler: it runs one job, which c
// describes, and its return value decides the job's fate:
//
//   - nil: the job is done, and what it saved (Call.Save), set as its
//     result (Call.SetResult) and emitted (Call.Emit) is committed with it.
//   - an error made by Fail or Failf, found anywhere in the error's chain:
//     the job is dead-lettered at once. Call.Decode, Payload and the other
//     helpers return such errors for problems that retrying cannot fix.
//   - an error made by Reject or Rejectf: a business "no". The job is
//     finished as rejected, with the error's reason as its answer; it is
//     neither retried nor dead-lettered.
//   - an error made by RetryAfter: the attempt failed, and the next one
//     comes no sooner than the error's delay.
//   - any other error, or a panic: the attempt failed, and the next one
//     comes after the worker's backoff (200 ms, doubling per attempt up to
//     1 min).
//
// After the last attempt (MaxAttempts, default 5) a failed job is
// dead-lettered. Whatever the error, nothing the job saved, set or emitted
// is kept. When an error's chain holds more than one of these, Fail wins
// over Reject, and Reject over RetryAfter.
//
// A HandlerFunc may run more than once for one job (see "Effects happen
// once; runs may not" in the package documentation), so its only effects
// must be through c. It should return once c.Context() is done. It may run
// on several goroutines at once, for the batches of different partitions.
type HandlerFunc func(c *Call) error

// HandlerDef is one handler as Handler declares it: its name, its
// function and its options. Pass HandlerDefs to Serve or New, which check
// them. The zero HandlerDef is not a valid handler.
type HandlerDef struct {
	name         string
	fn           HandlerFunc
	timeout      time.Duration
	maxAttempts  int
	concurrency  int
	payloadShape string // JSON object: required field → JSON type; "" when undeclared
	// payloadOptional is the optional fields' declaration, as payloadShape.
	payloadOptional string
	unknownFields   int    // unknownUndeclared, refuseUnknown or allowUnknown
	fromStruct      bool   // the shape comes from ShapeOf
	shapeErr        error  // a bad shape declaration, reported by New
	entity          string // declared entity type; "" for the name's prefix
	entitySet       bool   // Entity was given, maybe with an empty name
	internal        bool   // only emitted jobs run it
	subscribes      []string
	stateTTL        time.Duration
	broadcast       bool // runs on group members, with no state
}

// entityType is the entity type the handler reads and writes.
func (h *HandlerDef) entityType() string {
	if h.entity != "" {
		return h.entity
	}
	return plugins.EntityType(h.name)
}

// Option is a declaration about one handler, passed to Handler: Timeout,
// MaxAttempts, Concurrency, Entity, Internal, and the payload's shape:
// PayloadShape or ShapeOf, OptionalFields, NoUnknownFields and
// AllowUnknownFields. The plugin sends its handlers' options to the worker
// when the worker launches it (Describe), and they apply to every job of
// the handler. Of two options of the same kind, the later wins
// (NoUnknownFields and AllowUnknownFields are one kind).
type Option func(*HandlerDef)

// Timeout declares the deadline of a Handle call that carries jobs of
// this handler, in whole milliseconds. Zero, the default, leaves it to the
// worker: --plugin-timeout, 10 s unless set.
//
// The deadline covers a whole batch (up to 256 jobs), not one job. A call
// that carries jobs of several handlers gets the longest of their
// deadlines, a handler without a Timeout counting as the worker's
// default. When it passes, Call.Context is cancelled and the call fails:
// the worker kills and relaunches the plugin process and runs the batch
// again one key at a time, so that the job that is too slow is charged an
// attempt and the other keys' jobs commit.
//
// A submitter may ask for a shorter deadline for one job (coordinator
// submit --job-timeout); a longer one than the handler's Timeout is
// refused at submit. New panics on a negative d.
func Timeout(d time.Duration) Option {
	return func(h *HandlerDef) { h.timeout = d }
}

// MaxAttempts declares how many times in all, the first time included, a
// job of this handler is tried before it is dead-lettered: MaxAttempts(1)
// never retries. Zero, the default, leaves it to the worker:
// --max-attempts, 5 unless set.
//
// Every failed attempt counts: an error (RetryAfter included), a panic, a
// missed deadline or a plugin crash that the worker traces to the job.
// A Fail error dead-letters the job at once, whatever attempts are left.
// Between attempts the job waits the worker's backoff: 200 ms before the
// second, doubling per attempt up to 1 min, half of it jittered (worker
// --retry-backoff, --retry-backoff-max).
//
// A submitter may set a job's own limit, 1 to 100 (coordinator submit
// --max-attempts), which wins over the handler's. New panics on a
// negative n.
func MaxAttempts(n int) Option {
	return func(h *HandlerDef) { h.maxAttempts = n }
}

// Concurrency declares a cluster-wide limit: at most n attempts of this
// handler in flight at once across all workers (for a handler that calls
// a service which takes only so many requests). Jobs over the limit wait,
// parked on their keys without spending attempts, while other handlers
// and keys go on. Zero, the default, sets no limit. An operator may
// override it at runtime with `coordinator handler limit H --concurrency
// N`. New panics on a negative n.
func Concurrency(n int) Option {
	return func(h *HandlerDef) { h.concurrency = n }
}

// Entity declares the entity type whose state the handler reads and
// writes, for a handler whose name does not start with it. By default a
// handler works on the entity type its name names before the first dot
// ("stock" for "stock.add", see plugins.EntityType); with Entity it works
// on name instead, keyed by the job's key as always:
//
//	sdk.Handler("stock.add", add, sdk.Entity("inventory"))
//	sdk.Handler("stock.reserve", reserve, sdk.Entity("inventory"))
//
// Handlers that declare the same entity share its state: the worker hands
// each job the state of (name, key) and commits what it saves there, and
// coordinator state and Call.Query read it by that name. Call.Entity
// reports it. The worker refuses coordinator state and Call.Query of an
// entity type no handler declares, or gets by default, naming the types
// it knows.
//
// Changing a handler's entity moves no state: what was saved under the
// old type stays there (a hot reload that does it logs a warning). New
// panics on an empty name.
func Entity(name string) Option {
	return func(h *HandlerDef) { h.entity, h.entitySet = name, true }
}

// Internal declares a handler that only jobs emitted by other handlers
// (Call.Emit) may run: one step of a workflow that must not be started
// from outside. The worker refuses its jobs at Submit and Call, nothing
// written, with "handler order.reserved is internal: only other handlers
// may emit it", and leaves it out of the handlers an unknown-handler error
// lists; emitted jobs run as usual.
//
//	sdk.Handler("order.reserved", reserved, sdk.Internal())
func Internal() Option {
	return func(h *HandlerDef) { h.internal = true }
}

// Subscribe makes every message published to topics (Call.Publish) a job
// of the handler once it has committed: key the topic, payload the
// message, id "t~TOPIC~PARTITION~MESSAGE-ID", so each message runs once,
// and a topic's messages one after the other in each partition's commit
// order (they share a key). The cluster consumes a subscription from when
// a worker serving the handler first sees it declared, keeping its place
// in Redis. Such a handler is usually Internal as well.
func Subscribe(topics ...string) Option {
	return func(h *HandlerDef) { h.subscribes = append(h.subscribes, topics...) }
}

// StateTTL declares that the state of the handler's entity expires after
// d without a job: each commit of one of the entity's jobs by this
// handler sets the state's time to live to d again (Redis EXPIRE), saved
// or not, and a state no job touched for d is gone, as if never saved —
// for sessions, carts, rate windows. Declare the same d on every handler
// of the entity: a commit by a handler without StateTTL keeps a saved
// state for ever. New panics on a negative d; zero, the default, keeps
// states for ever.
//
//	sdk.Handler("session.touch", touch, sdk.StateTTL(30*time.Minute))
func StateTTL(d time.Duration) Option {
	return func(h *HandlerDef) { h.stateTTL = d }
}

// Broadcast declares a broadcast handler: it does not run submitted jobs
// but coordinator broadcast, once on every live worker of a group (or
// every worker), for cache invalidation, configuration reload or warm-up.
// It gets no entity state (Call.Load finds none, Call.Save, Call.Emit and
// Call.Publish fail the run) and its Call.Key is empty; Call.ID is the broadcast's id,
// the same on every member, and a member runs an id once. What it sets
// with Call.SetResult is each member's reply. Submit and Call refuse it.
//
//	sdk.Handler("cache.invalidate", invalidate, sdk.Broadcast())
func Broadcast() Option {
	return func(h *HandlerDef) { h.broadcast = true }
}

// Handler declares a handler for New or Serve: jobs submitted (or
// emitted) to name run fn, under the options opts.
//
// name is "entity.action", e.g. "donor.donate": unless the handler
// declares another with Entity, the part before the first dot is the
// entity type whose state fn reads and writes (see plugins.EntityType),
// and the whole name is what submitters and Call.Emit address, matched
// exactly. A name without a dot is an entity type of its own. Handler
// checks nothing; New panics on an empty name, a nil fn or a bad option.
func Handler(name string, fn HandlerFunc, opts ...Option) HandlerDef {
	h := HandlerDef{name: name, fn: fn}
	for _, o := range opts {
		o(&h)
	}
	return h
}

// Plugin is a set of handlers with a plugin name and version, built by
// New. Plugin.Serve runs it as the plugin process. It implements
// pluginpb.HandlerServer, the service the worker calls, so a test can call
// its Describe and Handle methods in process, without a worker (see
// "Testing without a cluster" in the package documentation). A Plugin is
// safe for concurrent use: the worker sends several batches at once.
type Plugin struct {
	// Answers Unimplemented to methods the protocol may add later.
	pluginpb.UnimplementedHandlerServer

	name     string
	version  string
	handlers map[string]HandlerDef
	order    []string // declaration order, for Describe
	log      *slog.Logger
	host     hostConns
}

var _ pluginpb.HandlerServer = (*Plugin)(nil)

type entityKey struct{ typ, key string }

// New builds a plugin called name, at version version, that serves
// handlers. The name labels the plugin's lines in the worker's log
// (plugin=name); name and version are what coordinator status shows
// (name@version), so that a hot upgrade can be seen to have happened. The
// version may be empty.
//
// Like http.ServeMux, New panics on a programming error: an empty plugin
// name, a handler with an empty name or a nil function, a negative
// Timeout, MaxAttempts or Concurrency, a bad PayloadShape or
// OptionalFields, ShapeOf of a type that is not a struct, an empty Entity
// name, or a handler declared twice.
func New(name, version string, handlers ...HandlerDef) *Plugin {
	if name == "" {
		panic("sdk.New: empty plugin name")
	}
	p := &Plugin{name: name, version: version, handlers: make(map[string]HandlerDef, len(handlers)), log: slog.Default()}
	for _, h := range handlers {
		switch {
		case h.name == "":
			panic("sdk.New: handler with an empty name")
		case h.fn == nil:
			panic(fmt.Sprintf("sdk.New: handler %q has a nil function", h.name))
		case h.timeout < 0 || h.maxAttempts < 0 || h.concurrency < 0 || h.stateTTL < 0:
			panic(fmt.Sprintf("sdk.New: handler %q has a negative timeout, max attempts, concurrency or state TTL", h.name))
		case h.broadcast && h.stateTTL > 0:
			panic(fmt.Sprintf("sdk.New: broadcast handler %q has no state to expire", h.name))
		case h.broadcast && len(h.subscribes) > 0:
			panic(fmt.Sprintf("sdk.New: broadcast handler %q runs no jobs, so no topic's messages", h.name))
		case h.shapeErr != nil:
			panic(fmt.Sprintf("sdk.New: handler %q: %v", h.name, h.shapeErr))
		case h.entitySet && h.entity == "":
			panic(fmt.Sprintf("sdk.New: handler %q declares an empty entity name", h.name))
		}
		if _, dup := p.handlers[h.name]; dup {
			panic(fmt.Sprintf("sdk.New: handler %q declared twice", h.name))
		}
		p.handlers[h.name] = h
		p.order = append(p.order, h.name)
	}
	return p
}

// Describe answers the worker's first call to a plugin it launched: the
// plugin's name and version, and its handlers in declaration order, each
// with its options (TimeoutMs, MaxAttempts, PayloadShape and
// PayloadOptional as JSON objects, PayloadClosed, Concurrency, Entity,
// Internal; 0, "" or false when not declared). The worker routes jobs to
// the plugin by these names, checks submitted payloads against the shapes
// and refuses submitted jobs of internal handlers.
// A test may call it to check what a plugin declares.
func (p *Plugin) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	resp := &pluginpb.DescribeResponse{Name: p.name, Version: p.version}
	for _, name := range p.order {
		h := p.handlers[name]
		resp.Handlers = append(resp.Handlers, &pluginpb.HandlerSpec{
			Name:            h.name,
			TimeoutMs:       h.timeout.Milliseconds(),
			MaxAttempts:     int32(h.maxAttempts),
			PayloadShape:    h.payloadShape,
			Concurrency:     int32(h.concurrency),
			Entity:          h.entity,
			Internal:        h.internal,
			Subscribes:      h.subscribes,
			PayloadOptional: h.payloadOptional,
			PayloadClosed:   h.closed(),
			StateTtlMs:      h.stateTTL.Milliseconds(),
			Broadcast:       h.broadcast,
		})
	}
	return resp, nil
}

// Handle runs one batch of jobs, as the worker sends it: req.Entities
// holds the state before the batch of each entity the jobs touch (empty:
// no state yet), and req.Jobs the jobs, in order. Handle runs them one
// after another and returns exactly one pluginpb.Outcome per job, in the
// same order:
//
//   - OK when the handler returned nil, with StateChanged and State when
//     it called Call.Save, Result when it called Call.SetResult, and its
//     Emits;
//   - RETRY with Error for any other error or a panic, and RetryAfterMs
//     for an error made by RetryAfter;
//   - FAIL with Error for an error made by Fail or Failf, and for a job
//     whose handler this plugin does not serve (ErrUnknownHandler);
//   - REJECTED with Error, the reason, for an error made by Reject or
//     Rejectf.
//
// A job sees the state saved by the earlier OK jobs of its entity in the
// batch; a RETRY, FAIL or REJECTED outcome carries only its error, and
// what that job saved is not seen by any other.
//
// If ctx is done before a job starts, Handle stops and returns ctx's error
// as a gRPC status, and no outcomes: the worker then handles the batch as
// failed. Handle applies nothing itself; the worker commits the outcomes.
// In a test, the outcomes are all that a batch of jobs would do.
func (p *Plugin) Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	states := make(map[entityKey][]byte, len(req.GetEntities()))
	for _, e := range req.GetEntities() {
		states[entityKey{e.GetType(), e.GetKey()}] = e.GetState()
	}
	jobs := req.GetJobs()
	resp := &pluginpb.HandleResponse{Outcomes: make([]*pluginpb.Outcome, 0, len(jobs))}
	hostID := req.GetHostServiceId()
	b := &batch{
		host: func() (pluginpb.HostClient, error) { return p.host.client(hostID) },
		// One allocation each for the batch's outcomes and calls.
		outs:  make([]pluginpb.Outcome, len(jobs)),
		calls: make([]Call, len(jobs)),
	}
	for i, job := range jobs {
		// Nobody reads the reply once the worker gave up; stop early.
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		resp.Outcomes = append(resp.Outcomes, p.run(ctx, job, states, b, i))
	}
	return resp, nil
}

// batch is what the jobs of one Handle call share: the host's query
// service, and room for their outcomes and calls.
type batch struct {
	host  func() (pluginpb.HostClient, error)
	outs  []pluginpb.Outcome
	calls []Call
	// saved holds, per entity whose state a job of the batch saved, the
	// value saved when it is of a plain type (see plainValue).
	saved map[entityKey]any
}

// run runs job, the i-th of b.
func (p *Plugin) run(ctx context.Context, job *pluginpb.Job, states map[entityKey][]byte, b *batch, i int) *pluginpb.Outcome {
	h, ok := p.handlers[job.GetHandler()]
	if !ok {
		return &pluginpb.Outcome{
			JobId:  job.GetId(),
			Status: pluginpb.Outcome_FAIL,
			Error:  fmt.Sprintf("%v %q: plugin %s does not serve it", ErrUnknownHandler, job.GetHandler(), p.name),
		}
	}
	ek := entityKey{h.entityType(), job.GetKey()}
	jctx := ctx
	if tp := job.GetTraceparent(); tp != "" {
		jctx = trace.ContextWithRemoteSpanContext(ctx, tracing.Parse(tp))
	}
	c := &b.calls[i]
	*c = Call{
		ctx:       jctx,
		job:       job,
		entity:    ek.typ,
		state:     states[ek],
		stateVal:  b.saved[ek],
		base:      p.log,
		host:      b.host,
		broadcast: h.broadcast,
	}
	if h.broadcast {
		c.entity, c.state, c.stateVal = "", nil, nil
	}
	err := invoke(h.fn, c)
	out := &b.outs[i]
	out.JobId = job.GetId()
	var fail *FailError
	var reject *RejectError
	var retry *RetryError
	switch {
	case err == nil:
		out.Status = pluginpb.Outcome_OK
		if c.changed {
			out.StateChanged = true
			out.State = c.state
			states[ek] = c.state
			switch {
			case c.stateVal != nil:
				if b.saved == nil {
					b.saved = make(map[entityKey]any)
				}
				b.saved[ek] = c.stateVal
			case b.saved != nil:
				delete(b.saved, ek)
			}
		}
		out.Result = c.result
		out.Emits = c.emits
		out.Publications = c.pubs
	case errors.As(err, &fail):
		out.Status = pluginpb.Outcome_FAIL
		out.Error = err.Error()
	case errors.As(err, &reject):
		out.Status = pluginpb.Outcome_REJECTED
		out.Error = err.Error()
	case errors.As(err, &retry):
		out.Status = pluginpb.Outcome_RETRY
		out.Error = err.Error()
		out.RetryAfterMs = int64((retry.After + time.Millisecond - 1) / time.Millisecond)
	default:
		out.Status = pluginpb.Outcome_RETRY
		out.Error = err.Error()
	}
	return out
}

// invoke calls fn, turning a panic into an error so that one bad job cannot
// take down the plugin and, with it, every other job of the batch.
func invoke(fn HandlerFunc, c *Call) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.Logger().Error("handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = &panicError{value: r}
		}
	}()
	return fn(c)
}
