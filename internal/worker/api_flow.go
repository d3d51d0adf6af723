package worker

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// queueFullStatus is the one-line ResourceExhausted answer to a submission
// a full partition refused, with the partition and depth as details.
func queueFullStatus(e *store.QueueFullError) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"queue full: %v; nothing was rejected: send the same jobs again later", e))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: peer.QueueFullReason, Domain: "corral",
		Metadata: map[string]string{"partition": strconv.Itoa(e.Partition), "depth": strconv.FormatInt(e.Depth, 10),
			"max": strconv.FormatInt(e.Max, 10)}}); err == nil {
		st = d
	}
	return st.Err()
}

// PauseHandler pauses a handler across the cluster: its jobs wait, parked
// on their keys without spending attempts, until it is resumed. Calls in
// flight finish.
func (a *API) PauseHandler(ctx context.Context, req *workerpb.HandlerFlowRequest) (*workerpb.HandlerFlow, error) {
	if err := a.knownHandler(req.Handler); err != nil {
		return nil, err
	}
	return a.updateFlow(ctx, req.Handler, func(f *store.FlowSettings) {
		if !f.Paused {
			f.Paused, f.PausedAtMs = true, time.Now().UnixMilli()
		}
	})
}

// ResumeHandler lifts a pause: the handler's waiting jobs go on, in per-key
// order. Resuming a handler that is not paused changes nothing.
func (a *API) ResumeHandler(ctx context.Context, req *workerpb.HandlerFlowRequest) (*workerpb.HandlerFlow, error) {
	if req.Handler == "" {
		return nil, status.Error(codes.InvalidArgument, "name the handler to resume")
	}
	return a.updateFlow(ctx, req.Handler, func(f *store.FlowSettings) { f.Paused, f.PausedAtMs = false, 0 })
}

// LimitHandler sets or lifts a handler's cluster-wide limits.
func (a *API) LimitHandler(ctx context.Context, req *workerpb.HandlerFlowRequest) (*workerpb.HandlerFlow, error) {
	if !req.Clear && !req.SetConcurrency && !req.SetRate {
		return nil, status.Error(codes.InvalidArgument, "give --concurrency N, --rate R [--burst B], or --clear")
	}
	switch {
	case req.Concurrency < 0:
		return nil, status.Errorf(codes.InvalidArgument, "concurrency must be 0 (the handler's declared one) or more, got %d", req.Concurrency)
	case req.Rate < 0 || math.IsNaN(req.Rate) || math.IsInf(req.Rate, 0):
		return nil, status.Errorf(codes.InvalidArgument, "rate must be 0 (no limit) or a positive number of jobs per second, got %v", req.Rate)
	case req.Burst < 0:
		return nil, status.Errorf(codes.InvalidArgument, "burst must be 0 (a second's worth) or more, got %d", req.Burst)
	case req.Burst > 0 && (!req.SetRate || req.Rate == 0):
		return nil, status.Error(codes.InvalidArgument, "a burst goes with a rate: give --rate R --burst B")
	}
	if !req.Clear || req.SetConcurrency || req.SetRate {
		if err := a.knownHandler(req.Handler); err != nil {
			return nil, err
		}
	}
	return a.updateFlow(ctx, req.Handler, func(f *store.FlowSettings) {
		if req.Clear {
			f.Concurrency, f.Rate, f.Burst = 0, 0, 0
		}
		if req.SetConcurrency {
			f.Concurrency = int(req.Concurrency)
		}
		if req.SetRate {
			f.Rate, f.Burst = req.Rate, int(req.Burst)
			if req.Rate == 0 {
				f.Burst = 0
			}
		}
	})
}

// HandlerFlows lists the handlers paused or limited, with the slots their
// jobs hold now.
func (a *API) HandlerFlows(ctx context.Context, _ *workerpb.HandlerFlowsRequest) (*workerpb.HandlerFlowsResponse, error) {
	if err := a.flow.refresh(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "read the flow settings: %v", err)
	}
	hs := a.intake.handlers()
	inForce := a.flow.flowInForce(hs)
	names := make([]string, 0, len(inForce))
	for h := range inForce {
		names = append(names, h)
	}
	sort.Strings(names)
	out := &workerpb.HandlerFlowsResponse{}
	settings := *a.flow.settings.Load()
	for _, h := range names {
		hf, err := a.handlerFlow(ctx, h, settings[h], hs)
		if err != nil {
			return nil, err
		}
		out.Flows = append(out.Flows, hf)
	}
	return out, nil
}

// updateFlow changes a handler's settings in Redis, applies them here at
// once (other workers within flowPoll) and answers what is in force.
func (a *API) updateFlow(ctx context.Context, handler string, change func(*store.FlowSettings)) (*workerpb.HandlerFlow, error) {
	fs, err := a.store.UpdateFlow(ctx, handler, change)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	a.flow.update(ctx, handler, fs)
	return a.handlerFlow(ctx, handler, fs, a.intake.handlers())
}

func (a *API) handlerFlow(ctx context.Context, h string, fs store.FlowSettings, hs map[string]host.HandlerInfo) (*workerpb.HandlerFlow, error) {
	l := a.flow.limitOf(h, hs)
	hf := &workerpb.HandlerFlow{Handler: h, Paused: fs.Paused, PausedAtMs: fs.PausedAtMs, Concurrency: int32(l.concurrency),
		DeclaredConcurrency: int32(hs[h].Concurrency), Rate: l.rate, Burst: int32(l.burst)}
	if l.concurrency > 0 {
		n, err := a.store.SlotsHeld(ctx, h)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		hf.InFlight = n
	}
	return hf, nil
}

// knownHandler refuses a handler no worker of the cluster serves.
func (a *API) knownHandler(h string) error {
	if h == "" {
		return status.Error(codes.InvalidArgument, "name the handler")
	}
	hs := a.intake.handlers()
	if a.intake.catalog == nil {
		if _, ok := hs[h]; ok {
			return nil
		}
	} else if a.intake.catalog.known(h, hs) {
		return nil
	}
	var names []string
	if a.intake.catalog != nil {
		names = a.intake.catalog.all(hs)
	} else {
		for n := range hs {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	return status.Errorf(codes.NotFound, "no worker serves handler %q; the handlers served: %s", h, strings.Join(names, ", "))
}
