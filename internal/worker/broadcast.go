package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/jobid"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits of a broadcast.
const (
	defaultBroadcastTimeout = 10 * time.Second
	maxBroadcastTimeout     = 10 * time.Minute
)

// broadcastStore records which broadcast ids ran on which member.
type broadcastStore interface {
	ClaimBroadcast(ctx context.Context, member, id string, retention time.Duration) (bool, store.BroadcastRecord, error)
	FinishBroadcast(ctx context.Context, member, id string, result []byte, retention time.Duration) error
	ForgetBroadcast(ctx context.Context, member, id string) error
}

// broadcastPeers reaches the other members.
type broadcastPeers interface {
	CallDirect(ctx context.Context, addr string, fn func(ctx context.Context, w workerpb.WorkerClient) error) error
}

// broadcaster runs broadcast handlers: it fans a broadcast out to the
// live members of a group as they are when it starts, and runs a
// member's part on this worker, once per id (recorded in Redis).
type broadcaster struct {
	self       string
	log        *slog.Logger
	view       *membership
	peers      broadcastPeers
	store      broadcastStore
	plugins    Handlers
	retention  time.Duration // how long a member remembers an id it ran
	maxPayload int
	metrics    *workerMetrics // nil: not counted
}

// Broadcast runs a broadcast handler once on every live member of a group.
func (a *API) Broadcast(ctx context.Context, req *workerpb.BroadcastRequest) (*workerpb.BroadcastResponse, error) {
	return a.bcast.broadcast(ctx, req)
}

// RunBroadcast runs this member's part of a broadcast.
func (a *API) RunBroadcast(ctx context.Context, req *workerpb.RunBroadcastRequest) (*workerpb.BroadcastMemberResult, error) {
	if err := validateID(req.Id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return a.bcast.run(ctx, req), nil
}

func (b *broadcaster) broadcast(ctx context.Context, req *workerpb.BroadcastRequest) (*workerpb.BroadcastResponse, error) {
	if req.Handler == "" {
		return nil, status.Error(codes.InvalidArgument, "broadcast needs a handler")
	}
	h, served := b.plugins.Handlers()[req.Handler]
	if served && !h.Broadcast {
		return nil, status.Errorf(codes.InvalidArgument, "handler %s is not a broadcast handler (sdk.Broadcast); submit its jobs instead", req.Handler)
	}
	if len(req.Payload) == 0 {
		req.Payload = []byte(`{}`) // a broadcast often needs no arguments
	}
	// Checked against the handler's declared shape when this worker serves
	// it, else only as JSON: each member's plugin decodes it anyway.
	var shape *payloadShape
	if served {
		shape = shapeOf(declOf(h))
	}
	if err := checkPayload(req.Payload, b.maxPayload, shape); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id := req.Id
	if id == "" {
		id = jobid.New(time.Now())
	}
	if err := validateID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	switch {
	case timeout < 0 || timeout > maxBroadcastTimeout:
		return nil, status.Errorf(codes.InvalidArgument, "timeout %v: a member's run may take up to %v", timeout, maxBroadcastTimeout)
	case timeout == 0:
		timeout = defaultBroadcastTimeout
	}
	var members []discovery.Member
	if ms := b.view.members.Load(); ms != nil {
		members = inGroup(*ms, req.Group)
	}
	if len(members) == 0 {
		if req.Group != "" {
			return nil, status.Errorf(codes.NotFound, "no live worker is in group %q (workers join groups with --groups)", req.Group)
		}
		return nil, status.Error(codes.Unavailable, "no live worker")
	}
	run := &workerpb.RunBroadcastRequest{Handler: req.Handler, Payload: req.Payload, Id: id}
	out := make([]*workerpb.BroadcastMemberResult, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = b.runOn(ctx, m, run, timeout)
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	b.log.Info("broadcast", "id", id, "handler", req.Handler, "group", req.Group, "members", len(out), "outcomes", outcomeCounts(out))
	return &workerpb.BroadcastResponse{Id: id, Members: out}, nil
}

// runOn runs a broadcast on member m, here or through a call, and says
// what came of it; a member that does not answer within timeout is
// reported unreachable, not waited for.
func (b *broadcaster) runOn(ctx context.Context, m discovery.Member, req *workerpb.RunBroadcastRequest, timeout time.Duration) *workerpb.BroadcastMemberResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r *workerpb.BroadcastMemberResult
	if m.ID == b.self {
		r = b.run(ctx, req)
	} else {
		err := b.peers.CallDirect(ctx, m.Address, func(ctx context.Context, w workerpb.WorkerClient) error {
			var err error
			r, err = w.RunBroadcast(ctx, req)
			return err
		})
		if err != nil {
			msg := err.Error()
			if s, ok := status.FromError(err); ok {
				msg = s.Message()
				if s.Code() == codes.DeadlineExceeded || errors.Is(ctx.Err(), context.DeadlineExceeded) {
					msg = fmt.Sprintf("no answer within %v: %s", timeout, msg)
				}
			}
			r = &workerpb.BroadcastMemberResult{Outcome: workerpb.BroadcastMemberResult_UNREACHABLE, Error: msg}
		}
	}
	r.Member = m.ID
	r.TookMs = time.Since(start).Milliseconds()
	return r
}

// run runs a broadcast here, unless this member ran its id before. A run
// that fails forgets the id, so sending it again runs it again.
func (b *broadcaster) run(ctx context.Context, req *workerpb.RunBroadcastRequest) (r *workerpb.BroadcastMemberResult) {
	if b.metrics != nil {
		defer func() { b.metrics.m.BroadcastRun(req.Handler, strings.ToLower(r.Outcome.String())) }()
	}
	failed := func(format string, args ...any) *workerpb.BroadcastMemberResult {
		return &workerpb.BroadcastMemberResult{Member: b.self, Outcome: workerpb.BroadcastMemberResult_FAILED, Error: fmt.Sprintf(format, args...)}
	}
	h, ok := b.plugins.Handlers()[req.Handler]
	switch {
	case !ok:
		return failed("this worker does not serve handler %s (plugins: %v)", req.Handler, b.plugins.Plugins())
	case !h.Broadcast:
		return failed("handler %s is not a broadcast handler (sdk.Broadcast)", req.Handler)
	}
	claimed, rec, err := b.store.ClaimBroadcast(ctx, b.self, req.Id, b.retention)
	if err != nil {
		return failed("%v", err)
	}
	if !claimed {
		r = &workerpb.BroadcastMemberResult{Member: b.self, Outcome: workerpb.BroadcastMemberResult_ALREADY, Result: rec.Result}
		if !rec.Done {
			r.Error = "this member started this id before and did not report how it ended; not run again"
		}
		return r
	}
	r = b.call(ctx, req, h)
	if r.Outcome == workerpb.BroadcastMemberResult_RAN {
		// Recorded with a context of its own: the run happened even if the
		// caller gave up meanwhile.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := b.store.FinishBroadcast(rctx, b.self, req.Id, r.Result, b.retention); err != nil {
			b.log.Warn("broadcast ran, but its outcome could not be recorded; the id stays claimed", "id", req.Id, "err", err)
		}
		return r
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := b.store.ForgetBroadcast(fctx, b.self, req.Id); err != nil {
		b.log.Warn("broadcast failed, and its claim could not be dropped: the id stays claimed until it expires", "id", req.Id, "err", err)
	}
	return r
}

// call runs the broadcast handler in its plugin, bounded by ctx and the
// handler's timeout.
func (b *broadcaster) call(ctx context.Context, req *workerpb.RunBroadcastRequest, h host.HandlerInfo) *workerpb.BroadcastMemberResult {
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	resp, err := b.plugins.Handle(ctx, &pluginpb.HandleRequest{Jobs: []*pluginpb.Job{{
		Id: req.Id, Handler: req.Handler, Payload: req.Payload, Attempt: 1, SubmittedAtMs: time.Now().UnixMilli()}}})
	r := &workerpb.BroadcastMemberResult{Member: b.self, Outcome: workerpb.BroadcastMemberResult_FAILED}
	switch {
	case err != nil:
		r.Error = "plugin call failed: " + err.Error()
	case len(resp.GetOutcomes()) != 1:
		r.Error = fmt.Sprintf("bad plugin reply: %d outcomes for one run", len(resp.GetOutcomes()))
	case resp.Outcomes[0].GetStatus() == pluginpb.Outcome_OK:
		r.Outcome, r.Result = workerpb.BroadcastMemberResult_RAN, resp.Outcomes[0].GetResult()
	default:
		r.Error = resp.Outcomes[0].GetError()
	}
	return r
}

// outcomeCounts says how many members had each outcome, for the log.
func outcomeCounts(rs []*workerpb.BroadcastMemberResult) map[string]int {
	n := map[string]int{}
	for _, r := range rs {
		n[r.Outcome.String()]++
	}
	return n
}
