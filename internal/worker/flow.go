package worker

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/metrics"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// flowStore is what flow control needs of the store.
type flowStore interface {
	FlowSettings(ctx context.Context) (map[string]store.FlowSettings, error)
	AcquireSlots(ctx context.Context, handler string, limit, n int, holder string, lease time.Duration) ([]string, error)
	ReleaseSlots(ctx context.Context, handler string, slots []string) error
	RenewSlots(ctx context.Context, handler string, slots []string, lease time.Duration) (int, error)
	TakeTokens(ctx context.Context, handler string, rate float64, burst, n int) (int, time.Duration, error)
	WakeParked(ctx context.Context, partition int, handlers map[string]bool, now int64) (int, error)
}

// flowControl holds back jobs of handlers that are paused or at their
// cluster-wide limits: at most N attempts in flight (a Redis semaphore of
// leased slots), at most R jobs per second (a Redis token bucket). A job
// held back is parked on its key, without spending an attempt, and looked
// at again later; the partition's other keys go on. It polls the settings
// from Redis, and when a handler is resumed wakes its parked jobs in the
// partitions owned here.
type flowControl struct {
	log     *slog.Logger
	store   flowStore
	plugins interface {
		Handlers() map[string]host.HandlerInfo
	}
	grants interface{ snapshot() map[int]lease.Grant }
	// holder names this worker's slots (its lease token: unique per
	// process); seq makes each acquisition's names unique.
	holder string
	seq    atomic.Uint64
	// slotLease is how long a slot lives unless renewed: its holder renews
	// it while the call runs, so a killed worker's slots free themselves
	// this soon.
	slotLease time.Duration
	metrics   *workerMetrics // nil: not measured

	settings atomic.Pointer[map[string]store.FlowSettings] // nil until loaded
	mu       sync.Mutex                                    // serializes apply
	applied  map[string]store.FlowSettings                 // as last applied

	sched flowSchedule
}

// flowSchedule places held-back jobs in time, per handler: each takes the
// next place, spaced by how fast the handler's limit lets jobs through
// (1/rate, or a call's duration over the concurrency), so this worker
// looks at a handler's backlog about as fast as the cluster can run it.
// It lives in memory: a new owner starts a schedule of its own.
type flowSchedule struct {
	mu   sync.Mutex
	next map[string]time.Time     // per handler: the last place given
	call map[string]time.Duration // per handler: a call's duration, smoothed
}

// place gives a held-back job of handler h its time: after the last one
// given, spaced by spacing, and not before earliest.
func (s *flowSchedule) place(h string, spacing time.Duration, earliest time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		s.next = map[string]time.Time{}
	}
	t := s.next[h]
	if t.Before(earliest) {
		t = earliest
	}
	t = t.Add(max(spacing, minSpacing))
	s.next[h] = t
	return t
}

// observe smooths the duration of a call with jobs of h.
func (s *flowSchedule) observe(h string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.call == nil {
		s.call = map[string]time.Duration{}
	}
	if old, ok := s.call[h]; ok {
		d = (3*old + d) / 4
	}
	s.call[h] = d
}

func (s *flowSchedule) callTime(h string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.call[h]; ok {
		return d
	}
	return callGuess
}

// forget drops h's schedule: its limits changed.
func (s *flowSchedule) forget(h string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.next, h)
}

// flowPoll is how often a worker reads the flow settings: a pause, resume
// or limit set through another worker takes effect here this soon.
const flowPoll = 500 * time.Millisecond

// Recheck times of a job held back. A paused handler's jobs are woken by
// the resume (and a limit's change), so they are looked at rarely. A job
// at a limit takes the next place in its handler's schedule here, which
// moves at the rate the limit lets jobs through (see flowSchedule), so a
// backlog is looked at about as fast as it can run, not all at once.
const (
	pauseRecheck = 30 * time.Second
	// callGuess is a call's duration before one was measured.
	callGuess = 50 * time.Millisecond
	// minSpacing bounds how often a handler's held-back jobs are looked
	// at, per worker.
	minSpacing        = 2 * time.Millisecond
	flowReleaseBudget = 2 * time.Second
)

// slotLease is how long a concurrency slot lives unless its holder renews
// it (every third of it while the call runs).
const slotLease = 10 * time.Second

// Reasons a job is held back, as the metrics label them.
const (
	flowPaused      = "paused"
	flowConcurrency = "concurrency"
	flowRate        = "rate"
)

func newFlowControl(log *slog.Logger, st flowStore, plugins interface {
	Handlers() map[string]host.HandlerInfo
}, g interface{ snapshot() map[int]lease.Grant }, holder string, slotLease time.Duration) *flowControl {
	return &flowControl{log: log, store: st, plugins: plugins, grants: g, holder: holder, slotLease: slotLease}
}

// refresh reads the settings from Redis and applies them.
func (f *flowControl) refresh(ctx context.Context) error {
	s, err := f.store.FlowSettings(ctx)
	if err != nil {
		return err
	}
	f.apply(ctx, s)
	return nil
}

// apply makes s the settings in force here, and wakes the parked jobs of
// the handlers no longer paused in the partitions owned here.
func (f *flowControl) apply(ctx context.Context, s map[string]store.FlowSettings) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settings.Store(&s)
	// Handlers resumed, or whose limits changed while not paused: their
	// parked jobs may be scheduled far ahead for the old limits.
	resumed := map[string]bool{}
	for h, old := range f.applied {
		cur := s[h]
		if !cur.Paused && (old.Paused || old.Concurrency != cur.Concurrency || old.Rate != cur.Rate || old.Burst != cur.Burst) {
			resumed[h] = true
			f.sched.forget(h)
		}
	}
	f.applied = s
	if len(resumed) == 0 || f.grants == nil {
		return
	}
	now := time.Now().UnixMilli()
	woken := 0
	for p := range f.grants.snapshot() {
		n, err := f.store.WakeParked(ctx, p, resumed, now)
		if err != nil {
			// Their recheck time still comes (pauseRecheck).
			f.log.Warn("waking a resumed handler's parked jobs failed; they run at their next look", "partition", p, "err", err)
			continue
		}
		woken += n
	}
	f.log.Info("handlers resumed or their limits changed; their waiting jobs are looked at again", "handlers", sortedKeys(resumed), "woken_here", woken)
}

// update applies one handler's new settings at once, before the next poll.
func (f *flowControl) update(ctx context.Context, handler string, fs store.FlowSettings) {
	cur := f.settings.Load()
	next := map[string]store.FlowSettings{}
	if cur != nil {
		next = maps.Clone(*cur)
	}
	if fs.IsZero() {
		delete(next, handler)
	} else {
		next[handler] = fs
	}
	f.apply(ctx, next)
}

// inForce lists the runtime settings applied here, by handler, for the
// corral_flow_in_force metric.
func (f *flowControl) inForce() []metrics.FlowInForce {
	cur := f.settings.Load()
	if cur == nil {
		return nil
	}
	out := make([]metrics.FlowInForce, 0, len(*cur))
	for h, s := range *cur {
		out = append(out, metrics.FlowInForce{Handler: h, Paused: s.Paused, Concurrency: s.Concurrency, Rate: s.Rate})
	}
	return out
}

// run polls the settings until ctx ends.
func (f *flowControl) run(ctx context.Context) {
	t := time.NewTicker(flowPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := f.refresh(ctx); err != nil && ctx.Err() == nil {
			f.log.Warn("reading the handlers' flow settings failed; the last ones stay in force", "err", err)
		}
	}
}

// flowLimit is what holds a handler back now.
type flowLimit struct {
	paused      bool
	concurrency int     // 0: none
	rate        float64 // 0: none
	burst       int
}

func (l flowLimit) any() bool { return l.paused || l.concurrency > 0 || l.rate > 0 }

// limitOf is handler h's limits in force: the runtime settings, and the
// concurrency its plugin declares unless they override it.
func (f *flowControl) limitOf(h string, hs map[string]host.HandlerInfo) flowLimit {
	var l flowLimit
	if s := f.settings.Load(); s != nil {
		fs := (*s)[h]
		l = flowLimit{paused: fs.Paused, concurrency: fs.Concurrency, rate: fs.Rate}
		if fs.Rate > 0 {
			l.burst = fs.BurstOrDefault()
		}
	}
	if l.concurrency == 0 {
		l.concurrency = hs[h].Concurrency
	}
	return l
}

// idle says nothing is paused or limited: no settings, and no handler
// here declares a concurrency. A batch then costs flow control nothing.
func (f *flowControl) idle(hs map[string]host.HandlerInfo) bool {
	if f == nil {
		return true
	}
	if s := f.settings.Load(); s != nil && len(*s) > 0 {
		return false
	}
	for _, h := range hs {
		if h.Concurrency > 0 {
			return false
		}
	}
	return true
}

// admission is what flow control lets a batch run.
type admission struct {
	run  []store.Job      // the jobs to run now, in the order given
	wait map[string]int64 // held-back jobs: id → when to look again (unix ms)
	// slots are the concurrency slots the run jobs hold, per handler,
	// given back by release once the plugin call returned.
	slots map[string][]string
	at    time.Time // when the slots were taken
	stop  func()    // stops renewing the slots; nil when none are held
}

// release gives back the slots the admitted jobs held.
func (f *flowControl) release(ctx context.Context, a admission) {
	if len(a.slots) == 0 {
		return
	}
	if a.stop != nil {
		a.stop()
	}
	took := time.Since(a.at)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flowReleaseBudget)
	defer cancel()
	for h, s := range a.slots {
		f.sched.observe(h, took)
		if err := f.store.ReleaseSlots(ctx, h, s); err != nil {
			f.log.Warn("giving back concurrency slots failed; they free themselves when their lease ends", "handler", h, "slots", len(s), "lease", f.slotLease, "err", err)
		}
		f.metrics.flowSlots(h, -len(s))
	}
}

// admit decides which of jobs run now. jobs hold each key's jobs in a
// row, in order. Per limited handler it asks Redis once for as many slots
// and tokens as the batch has jobs of it; per key, jobs run in order until
// one cannot: that one waits, and the key's later jobs wait behind it.
// Slots and tokens not used are given back. Without any limit in force it
// returns jobs as they are, touching nothing.
func (f *flowControl) admit(ctx context.Context, jobs []store.Job, hs map[string]host.HandlerInfo, now time.Time) (admission, error) {
	if f.idle(hs) {
		return admission{run: jobs}, nil
	}
	var limits map[string]flowLimit
	demand := map[string]int{}
	for _, j := range jobs {
		if _, seen := limits[j.Handler]; !seen {
			if limits == nil {
				limits = map[string]flowLimit{}
			}
			limits[j.Handler] = f.limitOf(j.Handler, hs)
		}
		if limits[j.Handler].any() {
			demand[j.Handler]++
		}
	}
	if len(demand) == 0 {
		return admission{run: jobs}, nil
	}
	a := admission{wait: map[string]int64{}, slots: map[string][]string{}, at: now}
	budget := map[string]int{}
	retryIn := map[string]time.Duration{} // rate: until the bucket's next token
	for h, n := range demand {
		l := limits[h]
		if l.paused {
			continue
		}
		if l.concurrency > 0 {
			holder := f.holder + "~" + strconv.FormatUint(f.seq.Add(1), 36)
			s, err := f.store.AcquireSlots(ctx, h, l.concurrency, n, holder, f.slotLease)
			if err != nil {
				f.giveBack(ctx, a, budget, limits, nil)
				return admission{}, err
			}
			a.slots[h] = s
			f.metrics.flowSlots(h, len(s))
			n = len(s)
		}
		if l.rate > 0 && n > 0 {
			got, wait, err := f.store.TakeTokens(ctx, h, l.rate, l.burst, n)
			if err != nil {
				f.giveBack(ctx, a, budget, limits, nil)
				return admission{}, err
			}
			retryIn[h] = wait
			n = got
		}
		budget[h] = n
	}
	used := map[string]int{}
	ranks := map[string]int{} // jobs of the handler held back so far
	var stopped *string       // the key whose job was held back
	for i := range jobs {
		j := jobs[i]
		if stopped != nil && j.Key == *stopped {
			continue // waits behind its key's held-back job
		}
		stopped = nil
		l := limits[j.Handler]
		if !l.any() {
			a.run = append(a.run, j)
			continue
		}
		if used[j.Handler] < budget[j.Handler] {
			used[j.Handler]++
			a.run = append(a.run, j)
			continue
		}
		reason, at := f.holdBack(j.Handler, l, now, retryIn[j.Handler])
		ranks[j.Handler]++
		a.wait[j.ID] = at.UnixMilli()
		f.metrics.flowWaited(j.Handler, reason)
		stopped = &jobs[i].Key
	}
	f.giveBack(ctx, a, budget, limits, used)
	if len(a.slots) > 0 {
		a.stop = f.keepSlots(ctx, a.slots)
	}
	if f.log.Enabled(ctx, slog.LevelDebug) && len(a.wait) > 0 {
		f.log.Debug("jobs held back by a pause or limit; they wait without spending attempts", "held", len(a.wait), "run", len(a.run), "ranks", ranks)
	}
	return a, nil
}

// keepSlots renews slots' leases every third of a lease until stop is
// called, so a call longer than a lease keeps its slots.
func (f *flowControl) keepSlots(ctx context.Context, slots map[string][]string) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(f.slotLease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for h, s := range slots {
				n, err := f.store.RenewSlots(ctx, h, s, f.slotLease)
				switch {
				case err != nil && ctx.Err() == nil:
					f.log.Warn("renewing concurrency slots failed; a call longer than their lease may pass the limit", "handler", h, "err", err)
				case err == nil && n < len(s):
					f.log.Warn("concurrency slots expired during a call; the limit may be passed until it ends", "handler", h, "lost", len(s)-n)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// holdBack says why a job of handler h with limits l waits, and when it
// is looked at again: a paused handler's in pauseRecheck (the resume wakes
// it sooner), a limited one at its place in the handler's schedule, not
// before the bucket's next token (tokenIn).
func (f *flowControl) holdBack(h string, l flowLimit, now time.Time, tokenIn time.Duration) (string, time.Time) {
	switch {
	case l.paused:
		return flowPaused, now.Add(pauseRecheck + jitter(pauseRecheck/10))
	case l.rate > 0 && (l.concurrency == 0 || tokenIn > 0):
		spacing := time.Duration(float64(time.Second) / l.rate)
		return flowRate, f.sched.place(h, spacing, now.Add(tokenIn))
	default:
		spacing := f.sched.callTime(h) / time.Duration(max(l.concurrency, 1))
		return flowConcurrency, f.sched.place(h, spacing, now)
	}
}

// giveBack returns the slots and tokens a batch took and does not use:
// used, per handler, is what it uses (nil: nothing, the admission failed),
// and a's slots keep only those.
func (f *flowControl) giveBack(ctx context.Context, a admission, budget map[string]int, limits map[string]flowLimit, used map[string]int) {
	for h, s := range a.slots {
		keep := min(used[h], len(s))
		if extra := s[keep:]; len(extra) > 0 {
			if err := f.store.ReleaseSlots(ctx, h, extra); err != nil {
				f.log.Warn("giving back unused concurrency slots failed; they free themselves when their lease ends", "handler", h, "err", err)
			}
			f.metrics.flowSlots(h, -len(extra))
		}
		a.slots[h] = s[:keep]
		if keep == 0 {
			delete(a.slots, h)
		}
	}
	for h, n := range budget {
		l := limits[h]
		if extra := n - used[h]; l.rate > 0 && extra > 0 {
			if _, _, err := f.store.TakeTokens(ctx, h, l.rate, l.burst, -extra); err != nil {
				f.log.Warn("giving back unused rate tokens failed", "handler", h, "err", err)
			}
		}
	}
}

// waitFlow marks a job held back by a pause or limit: it was not run and
// waits, parked on its key without an attempt counted, until the time
// work.flowUntil names.
var waitFlow = &pluginpb.Outcome{Status: pluginpb.Outcome_STATUS_UNSPECIFIED, Error: "held back by a pause or limit"}

// flowInForce lists the handlers paused or limited here, for status.
func (f *flowControl) flowInForce(hs map[string]host.HandlerInfo) map[string]flowLimit {
	out := map[string]flowLimit{}
	if f == nil {
		return out
	}
	if s := f.settings.Load(); s != nil {
		for h := range *s {
			if l := f.limitOf(h, hs); l.any() {
				out[h] = l
			}
		}
	}
	for h, info := range hs {
		if info.Concurrency > 0 {
			out[h] = f.limitOf(h, hs)
		}
	}
	return out
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// flowWaited counts a job held back.
func (wm *workerMetrics) flowWaited(handler, reason string) {
	if wm == nil || wm.flow == nil {
		return
	}
	wm.flow.Waited(handler, reason, 1)
}

// flowSlots counts slots taken (d > 0) or given back.
func (wm *workerMetrics) flowSlots(handler string, d int) {
	if wm == nil || wm.flow == nil || d == 0 {
		return
	}
	wm.flow.Slots(handler, d)
}
