package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// Errors callers can branch on. Every Handle error means "retry the batch".
var (
	// ErrBadReply: a plugin's reply does not match its request.
	ErrBadReply = errors.New("plugin sent a bad reply")
	// ErrDuplicateHandler: two plugins declare the same handler.
	ErrDuplicateHandler = errors.New("handler served by two plugins")
	// ErrReservedHandler: a plugin declares a handler whose name starts
	// with "~", kept for the jobs the worker runs itself (an entity delete).
	ErrReservedHandler = errors.New("reserved handler name")
	// ErrPluginUnavailable: a plugin's process is down and could not be
	// relaunched yet.
	ErrPluginUnavailable = errors.New("plugin unavailable")
	// ErrNotStarted: Handle was called before Start.
	ErrNotStarted = errors.New("plugin manager not started")
	// ErrStopped: the manager was stopped.
	ErrStopped = errors.New("plugin manager stopped")
	// ErrMessageTooLarge: a request or reply is over the gRPC message
	// limit (Config.MaxMessageBytes). Retrying the same batch cannot help;
	// a smaller one may.
	ErrMessageTooLarge = errors.New("plugin message over the size limit")
)

// HandlerInfo is what a plugin declared about one handler.
type HandlerInfo struct {
	Plugin      string
	Version     string
	Timeout     time.Duration // 0: the caller's default
	MaxAttempts int           // 0: the caller's default
	// PayloadShape is the declared payload shape, a JSON object mapping
	// required fields to JSON types; "" when none was declared.
	PayloadShape string
	// PayloadOptional maps the payload's optional fields to JSON types
	// ("any" for any), as PayloadShape; "" when none was declared.
	PayloadOptional string
	// PayloadClosed: a payload may hold no field but those of
	// PayloadShape and PayloadOptional.
	PayloadClosed bool
	Concurrency   int // attempts in flight in the cluster at once; 0: no limit
	// Entity is the entity type the handler reads and writes: the one it
	// declared, else its name up to the first dot (plugins.EntityOf).
	Entity string
	// Internal: only jobs emitted by other handlers run it; Submit and
	// Call refuse it.
	Internal bool
	// Subscribes are the topics whose messages become its jobs.
	Subscribes []string
	// StateTTL, when positive: the state of the handler's entity expires
	// after that long without a commit of one of its jobs.
	StateTTL time.Duration
	// Broadcast: the handler runs once on every member of a group
	// (coordinator broadcast), with no state; Submit and Call refuse it.
	Broadcast bool
}

type route struct {
	sup  *supervisor
	info HandlerInfo
}

type lifecycle int

const (
	created lifecycle = iota
	started
	stopped
)

// callable is the error of a call made to a manager in this state: before
// Start or after Stop.
func (l lifecycle) callable() error {
	switch l {
	case created:
		return ErrNotStarted
	case stopped:
		return ErrStopped
	}
	return nil
}

// Manager runs a worker's plugins and routes batches of jobs to them. It is
// safe for concurrent use once started.
type Manager struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time  // stubbed by tests
	checksums map[string]string // absolute path → pinned SHA-256 hex
	cacheDir  string            // private copies of the launched binaries; made by Start

	mu     sync.RWMutex
	state  lifecycle
	sups   []*supervisor
	routes map[string]route // handler name → plugin; set by Start and Reload

	reloadMu sync.Mutex // one reload at a time
	restarts atomic.Int64
	bg       sync.WaitGroup // watchers and kills of retired processes
}

// New validates cfg and returns a manager that has not launched anything.
func New(cfg Config) (*Manager, error) {
	// Fields added after Config literals were written default like
	// DefaultConfig.
	def := DefaultConfig()
	if cfg.RestartWindow == 0 {
		cfg.MaxRestarts, cfg.RestartWindow = def.MaxRestarts, def.RestartWindow
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = def.MaxMessageBytes
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Paths = append([]string(nil), cfg.Paths...)
	checksums := map[string]string{}
	for i, p := range cfg.Paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("host: plugin %s: %w", p, err)
		}
		// exec would look a bare name up in $PATH, not where Validate looked.
		cfg.Paths[i] = abs
		if sum, ok := cfg.Checksums[p]; ok {
			checksums[abs] = sum
		}
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, now: time.Now, checksums: checksums}
	if cfg.Host != nil {
		m.cfg.Host = declaredEntities{HostServer: cfg.Host, m: m}
	}
	return m, nil
}

// Start launches every plugin and learns its handlers. If any plugin fails
// to start, or two plugins declare the same handler, Start kills what it
// launched and returns the error.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case started:
		return errors.New("host: plugin manager already started")
	case stopped:
		return ErrStopped
	}
	if err := m.makeCacheDir(); err != nil {
		return err
	}
	var sups []*supervisor
	fail := func(err error) error {
		for _, s := range sups {
			s.stop()
		}
		_ = os.RemoveAll(m.cacheDir)
		return err
	}
	for i, path := range m.cfg.Paths {
		s := newSupervisor(m, i, path)
		if err := s.start(ctx); err != nil {
			return fail(fmt.Errorf("host: %w", err))
		}
		sups = append(sups, s)
		d := s.describe()
		m.log.Info("plugin started", "plugin", d.GetName(), "version", d.GetVersion(), "path", path,
			"sha256", s.good.hex(), "handlers", len(d.GetHandlers()), "pid", s.pid())
	}
	descs := make([]*pluginpb.DescribeResponse, len(sups))
	for i, s := range sups {
		descs[i] = s.describe()
	}
	routes, err := buildRoutes(sups, descs)
	if err != nil {
		return fail(err)
	}
	m.sups, m.routes, m.state = sups, routes, started
	return nil
}

// buildRoutes maps every handler to its plugin, refusing a handler that two
// plugins declare.
func buildRoutes(sups []*supervisor, descs []*pluginpb.DescribeResponse) (map[string]route, error) {
	routes := make(map[string]route)
	for i, s := range sups {
		d := descs[i]
		for _, h := range d.GetHandlers() {
			if strings.HasPrefix(h.GetName(), "~") {
				return nil, fmt.Errorf("host: %w: plugin %s (%s) declares %q; names starting with ~ are the worker's own",
					ErrReservedHandler, d.GetName(), s.path, h.GetName())
			}
			if other, dup := routes[h.GetName()]; dup {
				return nil, fmt.Errorf("host: %w: %s is declared by plugin %s (%s) and plugin %s (%s)",
					ErrDuplicateHandler, h.GetName(), other.info.Plugin, other.sup.path, d.GetName(), s.path)
			}
			routes[h.GetName()] = route{sup: s, info: HandlerInfo{
				Plugin:          d.GetName(),
				Version:         d.GetVersion(),
				Timeout:         time.Duration(h.GetTimeoutMs()) * time.Millisecond,
				MaxAttempts:     int(h.GetMaxAttempts()),
				PayloadShape:    h.GetPayloadShape(),
				PayloadOptional: h.GetPayloadOptional(),
				PayloadClosed:   h.GetPayloadClosed(),
				Concurrency:     int(h.GetConcurrency()),
				Entity:          plugins.EntityOf(h),
				Internal:        h.GetInternal(),
				Subscribes:      h.GetSubscribes(),
				StateTTL:        time.Duration(h.GetStateTtlMs()) * time.Millisecond,
				Broadcast:       h.GetBroadcast(),
			}}
		}
	}
	return routes, nil
}

// PluginChange is what a reload did to one plugin.
type PluginChange struct {
	Name string
	// From and To are the versions before and after; FromSHA256 and
	// ToSHA256 the hex SHA-256 of the binaries.
	From, To             string
	FromSHA256, ToSHA256 string
}

// Reload relaunches every plugin from its binary, which may have been
// replaced, without stopping the worker: each new process is verified
// (checksum), started and described first; only if all of them come up
// and still serve every handler the old ones did are they swapped in, and
// their binaries become the ones relaunched after a crash. Calls in flight
// finish on the old processes, which are then killed; new calls go to the
// new ones. On error nothing changes, and PluginStatus reports the files
// that were refused. It returns "name@version" of the plugins now running.
func (m *Manager) Reload(ctx context.Context) ([]string, error) {
	if _, err := m.ReloadChanges(ctx); err != nil {
		return nil, err
	}
	return m.Plugins(), nil
}

// ReloadChanges is Reload, returning the old and new version of every
// plugin, sorted by name.
func (m *Manager) ReloadChanges(ctx context.Context) ([]PluginChange, error) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.mu.RLock()
	state, sups := m.state, m.sups
	m.mu.RUnlock()
	if err := state.callable(); err != nil {
		return nil, err
	}
	start := m.now()
	next := make([]*proc, len(sups))
	bins := make([]*binary, len(sups))
	descs := make([]*pluginpb.DescribeResponse, len(sups))
	// abort kills the new processes and records, for PluginStatus, why
	// the new files do not run: cause, the error of plugin failed (-1:
	// of them all), without the path and prefixes err adds.
	abort := func(failed int, err, cause error) ([]PluginChange, error) {
		for _, p := range next {
			if p != nil {
				p.client.Kill()
			}
		}
		for i, s := range sups {
			reason := "reload failed: " + shortReason(cause)
			if failed >= 0 && i != failed {
				reason = fmt.Sprintf("reload failed on plugin %s: %s", sups[failed].name(), shortReason(cause))
			}
			s.refuse(bins[i], reason)
		}
		m.log.Error("plugin reload failed; the running plugins are kept", "err", err)
		return nil, err
	}
	for i, s := range sups {
		p, bin, err := s.launch(ctx)
		bins[i] = bin
		if err != nil {
			cause := err
			if u := errors.Unwrap(err); u != nil && !errors.As(err, new(*LaunchError)) {
				cause = u // without "launch plugin PATH: "
			}
			return abort(i, fmt.Errorf("host: reload: %w", err), cause)
		}
		next[i], descs[i] = p, p.desc
		if err := sameHandlers(s.describe(), p.desc); err != nil {
			return abort(i, fmt.Errorf("host: reload %s: %w", s.path, err), err)
		}
	}
	routes, err := buildRoutes(sups, descs)
	if err != nil {
		return abort(-1, fmt.Errorf("host: reload: %w", err), err)
	}
	m.mu.Lock()
	if m.state == stopped {
		m.mu.Unlock()
		return abort(-1, ErrStopped, ErrStopped)
	}
	changes := make([]PluginChange, len(sups))
	for i, s := range sups {
		old, oldBin := s.replace(next[i])
		for _, mv := range movedEntities(old, descs[i]) {
			m.log.Warn("plugin reload: a handler now reads and writes another entity type; states saved under the old one stay there",
				"plugin", descs[i].GetName(), "handler", mv[0], "was", mv[1], "now", mv[2])
		}
		changes[i] = PluginChange{Name: descs[i].GetName(), From: old.GetVersion(), To: descs[i].GetVersion(),
			FromSHA256: oldBin.hex(), ToSHA256: next[i].bin.hex()}
		m.log.Info("plugin reloaded", "plugin", descs[i].GetName(), "from", old.GetVersion(),
			"to", descs[i].GetVersion(), "sha256", next[i].bin.hex(), "pid", next[i].pid)
	}
	m.routes = routes
	m.mu.Unlock()
	m.log.Info("plugins reloaded", "plugins", m.Plugins(), "took", m.now().Sub(start).Round(time.Millisecond))
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	return changes, nil
}

// movedEntities lists the handlers whose entity type differs between two
// descriptions of a plugin, as {handler, before, after}.
func movedEntities(before, after *pluginpb.DescribeResponse) [][3]string {
	was := make(map[string]string, len(before.GetHandlers()))
	for _, h := range before.GetHandlers() {
		was[h.GetName()] = plugins.EntityOf(h)
	}
	var out [][3]string
	for _, h := range after.GetHandlers() {
		if e, ok := was[h.GetName()]; ok && e != plugins.EntityOf(h) {
			out = append(out, [3]string{h.GetName(), e, plugins.EntityOf(h)})
		}
	}
	return out
}

// Degraded reports whether a plugin is past its restart intensity
// (Config.MaxRestarts within Config.RestartWindow), and why. It clears once
// the plugin has stayed up for a restart window.
func (m *Manager) Degraded() (bool, string) {
	m.mu.RLock()
	sups := m.sups
	m.mu.RUnlock()
	var reasons []string
	for _, s := range sups {
		if bad, why := s.degraded(); bad {
			reasons = append(reasons, why)
		}
	}
	return len(reasons) > 0, strings.Join(reasons, "; ")
}

// Restarts counts plugin relaunches after a crash, a hang or a lost
// connection, over the manager's life. Reloads are not restarts.
func (m *Manager) Restarts() int64 { return m.restarts.Load() }

// Stop kills every plugin process. It is safe to call twice, and before
// Start; a stopped manager cannot be started again.
func (m *Manager) Stop() {
	m.mu.Lock()
	if m.state == stopped {
		m.mu.Unlock()
		return
	}
	sups := m.sups
	m.state = stopped
	m.mu.Unlock()

	var wg sync.WaitGroup
	for _, s := range sups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop()
		}()
	}
	wg.Wait()
	m.bg.Wait()
	if m.cacheDir != "" {
		_ = os.RemoveAll(m.cacheDir)
	}
}

// Handlers returns a copy of the handler table: name → what its plugin
// declared. Empty before Start.
func (m *Manager) Handlers() map[string]HandlerInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]HandlerInfo, len(m.routes))
	for name, r := range m.routes {
		out[name] = r.info
	}
	return out
}

// Entities returns the entity types the handlers read and write, sorted
// and each once. Empty before Start.
func (m *Manager) Entities() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return entitiesIn(m.routes)
}

func entitiesIn(routes map[string]route) []string {
	seen := make(map[string]bool, len(routes))
	out := make([]string, 0, len(routes))
	for _, r := range routes {
		if e := r.info.Entity; !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out
}

// Plugins returns "name@version" of every plugin, sorted.
func (m *Manager) Plugins() []string {
	m.mu.RLock()
	sups := m.sups
	m.mu.RUnlock()
	out := make([]string, 0, len(sups))
	for _, s := range sups {
		d := s.describe()
		out = append(out, d.GetName()+"@"+d.GetVersion())
	}
	sort.Strings(out)
	return out
}

// Handle runs a batch whose jobs may belong to several plugins. Each plugin
// gets its jobs, in request order, and the states of the entities they
// touch; the outcomes come back in request order. A job whose handler no
// plugin serves fails ("unknown handler") without failing the batch. Any
// other problem — a plugin that is down, hangs past its deadline or sends a
// bad reply — fails the whole call, and the caller retries the batch.
func (m *Manager) Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	m.mu.RLock()
	state, routes := m.state, m.routes
	m.mu.RUnlock()
	if err := state.callable(); err != nil {
		return nil, err
	}

	jobs := req.GetJobs()
	outcomes := make([]*pluginpb.Outcome, len(jobs))
	var calls []*call
	bySup := make(map[*supervisor]*call)
	for i, j := range jobs {
		r, ok := routes[j.GetHandler()]
		if !ok {
			outcomes[i] = &pluginpb.Outcome{JobId: j.GetId(), Status: pluginpb.Outcome_FAIL,
				Error: fmt.Sprintf("unknown handler %q: no plugin on this worker serves it", j.GetHandler())}
			continue
		}
		c := bySup[r.sup]
		if c == nil {
			c = &call{sup: r.sup, req: &pluginpb.HandleRequest{Jobs: make([]*pluginpb.Job, 0, len(jobs))}, index: make([]int, 0, len(jobs))}
			bySup[r.sup] = c
			calls = append(calls, c)
		}
		c.index = append(c.index, i)
		c.req.Jobs = append(c.req.Jobs, j)
		c.timeout = max(c.timeout, orDefault(r.info.Timeout, m.cfg.CallTimeout))
	}
	for _, c := range calls {
		c.req.Entities = entitiesOf(req.GetEntities(), c.req.Jobs, routes)
	}

	errs := make([]error, len(calls))
	if len(calls) == 1 {
		errs[0] = m.run(ctx, calls[0])
	} else {
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = m.run(ctx, c)
			}()
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, c := range calls {
		for k, o := range c.resp.GetOutcomes() {
			outcomes[c.index[k]] = o
		}
	}
	return &pluginpb.HandleResponse{Outcomes: outcomes}, nil
}

// call is the part of a batch that goes to one plugin.
type call struct {
	sup     *supervisor
	req     *pluginpb.HandleRequest
	index   []int // position in the caller's request of each job of req
	timeout time.Duration
	resp    *pluginpb.HandleResponse
}

// orDefault is d, or fallback when d is unset.
func orDefault(d, fallback time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return fallback
}

// entitiesOf keeps the entities that jobs touch, by the entity types their
// handlers declare, so a plugin sees no state that is not its own.
func entitiesOf(all []*pluginpb.Entity, jobs []*pluginpb.Job, routes map[string]route) []*pluginpb.Entity {
	type entityKey struct{ typ, key string }
	touched := make(map[entityKey]bool, len(jobs))
	for _, j := range jobs {
		touched[entityKey{routes[j.GetHandler()].info.Entity, j.GetKey()}] = true
	}
	out := make([]*pluginpb.Entity, 0, len(all))
	for _, e := range all {
		if touched[entityKey{e.GetType(), e.GetKey()}] {
			out = append(out, e)
		}
	}
	return out
}

// run sends c to its plugin. A call that finds the connection broken is
// sent once more to a relaunched process: Handle has no side effects in the
// plugin, so repeating it is safe.
func (m *Manager) run(ctx context.Context, c *call) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	name := c.sup.name()
	for attempt := 1; ; attempt++ {
		p, err := c.sup.acquire()
		if err != nil {
			return fmt.Errorf("plugin %s: %w", name, err)
		}
		c.req.HostServiceId = p.hostID
		resp, err := p.rpc.Handle(ctx, c.req)
		c.sup.release(p)
		if err == nil {
			if err := checkReply(c.req, resp); err != nil {
				return fmt.Errorf("plugin %s: %w", name, err)
			}
			c.resp = resp
			return nil
		}
		code := status.Code(err)
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			// Whichever deadline fired, ours or the caller's, the plugin did
			// not answer in time: it may be stuck in a loop that no context
			// reaches, so the next call gets a new process. (A cancelled
			// caller, by contrast, says nothing about the plugin.)
			c.sup.retire(p, "Handle missed its deadline", true)
			return fmt.Errorf("plugin %s: handle %d jobs: no reply within the deadline (%v at most): %w",
				name, len(c.req.Jobs), c.timeout, err)
		case code == codes.ResourceExhausted:
			return m.tooLarge(name, c.req, err)
		case code == codes.Unavailable && ctx.Err() == nil:
			// The process died or is dying under us.
			c.sup.retire(p, "connection lost: "+err.Error(), false)
			if attempt < 2 {
				continue
			}
		}
		return fmt.Errorf("plugin %s: handle %d jobs: %w", name, len(c.req.Jobs), err)
	}
}

// tooLarge explains a ResourceExhausted from gRPC: the request or the
// reply is over the message limit both ends share.
func (m *Manager) tooLarge(name string, req *pluginpb.HandleRequest, err error) error {
	limit := m.cfg.MaxMessageBytes
	if size := proto.Size(req); size > limit {
		return fmt.Errorf("plugin %s: %w: the request of %d jobs is %d bytes, over the %d-byte limit; send smaller batches: %v",
			name, ErrMessageTooLarge, len(req.GetJobs()), size, limit, status.Convert(err).Message())
	}
	return fmt.Errorf("plugin %s: %w: the reply to %d jobs is over the %d-byte limit (raise --plugin-max-message or send smaller batches): %v",
		name, ErrMessageTooLarge, len(req.GetJobs()), limit, status.Convert(err).Message())
}

// checkReply insists on one outcome per job, in order, each with a status
// the protocol defines. Anything else is garbage that must not be
// committed.
func checkReply(req *pluginpb.HandleRequest, resp *pluginpb.HandleResponse) error {
	jobs, outs := req.GetJobs(), resp.GetOutcomes()
	if len(outs) != len(jobs) {
		return fmt.Errorf("%w: %d outcomes for %d jobs", ErrBadReply, len(outs), len(jobs))
	}
	for i, o := range outs {
		if o.GetJobId() != jobs[i].GetId() {
			return fmt.Errorf("%w: outcome %d is for job %q, want job %q", ErrBadReply, i, o.GetJobId(), jobs[i].GetId())
		}
		switch o.GetStatus() {
		case pluginpb.Outcome_OK, pluginpb.Outcome_RETRY, pluginpb.Outcome_FAIL, pluginpb.Outcome_REJECTED:
		default:
			return fmt.Errorf("%w: job %q has status %v", ErrBadReply, o.GetJobId(), o.GetStatus())
		}
	}
	return nil
}
