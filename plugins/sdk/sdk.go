package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// HandlerFunc runs one job. See the package documentation for what its
// return value means.
type HandlerFunc func(c *Call) error

// HandlerDef is a handler as declared to New: its name, function and the
// limits it asks the worker for.
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
}

// entityType is the entity type the handler reads and writes.
func (h *HandlerDef) entityType() string {
	if h.entity != "" {
		return h.entity
	}
	return plugins.EntityType(h.name)
}

// Option sets a handler limit.
type Option func(*HandlerDef)

// Timeout is the deadline of one batch call that contains jobs of this
// handler. Zero (the default) leaves it to the worker.
func Timeout(d time.Duration) Option {
	return func(h *HandlerDef) { h.timeout = d }
}

// MaxAttempts is how many times a job of this handler is tried before it is
// dead-lettered. Zero (the default) leaves it to the worker.
func MaxAttempts(n int) Option {
	return func(h *HandlerDef) { h.maxAttempts = n }
}

// Concurrency hints how many batches of this handler the worker may run at
// once. Zero (the default) leaves it to the worker.
func Concurrency(n int) Option {
	return func(h *HandlerDef) { h.concurrency = n }
}

// Entity names the entity type whose state the handler reads and writes,
// for a handler whose name does not start with it: by default a handler
// works on the entity its name names before the first dot ("stock" for
// "stock.add"). Handlers declaring the same entity share its state, and
// `coordinator state ENTITY KEY` and Call.Query read it by that name.
//
//	sdk.Handler("stock.add", add, sdk.Entity("inventory"))
//
// An empty name is a programming error New panics on.
func Entity(name string) Option {
	return func(h *HandlerDef) { h.entity, h.entitySet = name, true }
}

// Internal declares a handler that only other handlers' emitted jobs may
// run: the worker refuses to accept its jobs from Submit and Call ("handler
// order.reserved is internal: only other handlers may emit it"), while jobs
// emitted to it run as usual. Use it for the steps of a workflow that must
// not be started from outside.
//
//	sdk.Handler("order.reserved", reserved, sdk.Internal())
func Internal() Option {
	return func(h *HandlerDef) { h.internal = true }
}

// Handler declares a handler named "entity.action", e.g. "donor.donate".
// Its entity type is the part of the name before the first dot, unless it
// declares another with Entity.
func Handler(name string, fn HandlerFunc, opts ...Option) HandlerDef {
	h := HandlerDef{name: name, fn: fn}
	for _, o := range opts {
		o(&h)
	}
	return h
}

// Plugin is a set of handlers with a name and a version. It implements
// pluginpb.HandlerServer, so Serve can serve it and tests can call it.
type Plugin struct {
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

// New builds a plugin. Like http.ServeMux, it panics on a programming error:
// an empty plugin, handler or entity name, a nil function, a negative
// limit, or a handler declared twice.
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
		case h.timeout < 0 || h.maxAttempts < 0 || h.concurrency < 0:
			panic(fmt.Sprintf("sdk.New: handler %q has a negative timeout, max attempts or concurrency", h.name))
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

// Describe lists the plugin's handlers in declaration order.
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
			PayloadOptional: h.payloadOptional,
			PayloadClosed:   h.closed(),
		})
	}
	return resp, nil
}

// Handle runs the batch's jobs in order and returns one outcome per job.
// The state a job saved is what later jobs of the same entity see, but only
// if the job succeeded.
func (p *Plugin) Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	states := make(map[entityKey][]byte, len(req.GetEntities()))
	for _, e := range req.GetEntities() {
		states[entityKey{e.GetType(), e.GetKey()}] = e.GetState()
	}
	resp := &pluginpb.HandleResponse{Outcomes: make([]*pluginpb.Outcome, 0, len(req.GetJobs()))}
	for _, job := range req.GetJobs() {
		// Nobody reads the reply once the worker gave up; stop early.
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		resp.Outcomes = append(resp.Outcomes, p.run(ctx, job, states, req.GetHostServiceId()))
	}
	return resp, nil
}

func (p *Plugin) run(ctx context.Context, job *pluginpb.Job, states map[entityKey][]byte, hostID uint32) *pluginpb.Outcome {
	h, ok := p.handlers[job.GetHandler()]
	if !ok {
		return &pluginpb.Outcome{
			JobId:  job.GetId(),
			Status: pluginpb.Outcome_FAIL,
			Error:  fmt.Sprintf("%v %q: plugin %s does not serve it", ErrUnknownHandler, job.GetHandler(), p.name),
		}
	}
	ek := entityKey{h.entityType(), job.GetKey()}
	c := &Call{
		ctx:    ctx,
		job:    job,
		entity: ek.typ,
		state:  states[ek],
		base:   p.log,
		host:   func() (pluginpb.HostClient, error) { return p.host.client(hostID) },
	}
	err := invoke(h.fn, c)
	out := &pluginpb.Outcome{JobId: job.GetId()}
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
		}
		out.Result = c.result
		out.Emits = c.emits
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
