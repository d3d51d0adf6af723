package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// Call is one job as its handler sees it. A Call is only valid during the
// handler invocation it was passed to, and is not safe for concurrent use.
type Call struct {
	ctx    context.Context
	job    *pluginpb.Job
	entity string
	base   *slog.Logger // the plugin's logger; log adds the job to it when first asked
	log    *slog.Logger
	host   func() (pluginpb.HostClient, error) // the host's query service

	state   []byte // the entity's state, as saved by earlier jobs or Save
	changed bool
	result  []byte
	emits   []*pluginpb.Emit
}

// Context is cancelled when the worker gives up on the batch (its deadline
// passed or the worker is shutting down). Long handlers should watch it.
func (c *Call) Context() context.Context { return c.ctx }

// Job is the job as the worker sent it. Treat it as read-only.
func (c *Call) Job() *pluginpb.Job { return c.job }

// ID is the job's id, its idempotency key.
func (c *Call) ID() string { return c.job.GetId() }

// Handler is the name of the handler the job was sent to.
func (c *Call) Handler() string { return c.job.GetHandler() }

// Key is the job's key: the key of the entity the handler reads and writes.
func (c *Call) Key() string { return c.job.GetKey() }

// Entity is the entity type the handler reads and writes: the one it
// declared with the Entity option, else its name up to the first dot.
func (c *Call) Entity() string { return c.entity }

// Attempt is 1 on the first delivery of the job, 2 on the first retry, ...
func (c *Call) Attempt() int { return int(c.job.GetAttempt()) }

// Payload is the job's raw JSON payload.
func (c *Call) Payload() []byte { return c.job.GetPayload() }

// Logger logs to the worker's log with the job's id, handler and key.
func (c *Call) Logger() *slog.Logger {
	if c.log == nil {
		c.log = c.base.With("job_id", c.job.GetId(), "handler", c.job.GetHandler(), "key", c.job.GetKey())
	}
	return c.log
}

// Decode unmarshals the JSON payload into v. A payload that does not decode
// will never decode, so the error is already marked with Fail: return it
// and the job is dead-lettered with a message saying why.
func (c *Call) Decode(v any) error {
	p := c.job.GetPayload()
	if len(p) == 0 {
		return Failf("decode %s payload: payload is empty", c.Handler())
	}
	if err := json.Unmarshal(p, v); err != nil {
		return Fail(fmt.Errorf("decode %s payload: %w", c.Handler(), err))
	}
	return nil
}

// Load unmarshals the entity's current state into v. found is false, and v
// untouched, when the entity has no state yet. After Save, Load sees the
// saved state.
func (c *Call) Load(v any) (found bool, err error) {
	if len(c.state) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(c.state, v); err != nil {
		// Not Fail: the state may be readable again once the plugin is fixed.
		return false, fmt.Errorf("load %s %q state: %w", c.entity, c.Key(), err)
	}
	return true, nil
}

// Save replaces the entity's state with v marshalled to JSON. It takes
// effect only if the handler returns nil.
func (c *Call) Save(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return Fail(fmt.Errorf("save %s %q state: %w", c.entity, c.Key(), err))
	}
	c.state = b
	c.changed = true
	return nil
}

// Emit asks the worker to submit a job to handler with key and payload
// (marshalled to JSON; pass a json.RawMessage to send bytes as they are)
// once this job commits. The emitted job's id derives from this job's id, so
// it runs once even when this job runs more than once.
func (c *Call) Emit(handler, key string, payload any) error {
	if handler == "" {
		return Failf("emit from %s: empty handler name", c.Handler())
	}
	if key == "" {
		return Failf("emit %s from %s: empty key", handler, c.Handler())
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return Fail(fmt.Errorf("emit %s from %s: marshal payload: %w", handler, c.Handler(), err))
	}
	c.emits = append(c.emits, &pluginpb.Emit{Handler: handler, Key: key, Payload: b})
	return nil
}

// SetResult stores v, marshalled to JSON, as the job's result for whoever
// waits on it. A later call replaces an earlier one.
func (c *Call) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return Fail(fmt.Errorf("set %s result: %w", c.Handler(), err))
	}
	c.result = b
	return nil
}
