package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// batchStore is what the executor needs of the job store.
type batchStore interface {
	Due(ctx context.Context, parts []int, now int64) (delayed, parked map[int]bool, err error)
	ReleaseDue(ctx context.Context, p int, grant lease.Grant, now, max int64) (int, error)
	Read(ctx context.Context, cursors map[int]string, count int64, block time.Duration) (map[int][]store.Job, error)
	LoadParked(ctx context.Context, p int, now, maxKeys, maxWaiting int64) ([]store.KeyRun, error)
	Load(ctx context.Context, p int, jobs []store.Job, entityOf func(handler string) string) (store.Snapshot, error)
	LoadOptimistic(ctx context.Context, p int, jobs []store.Job, entityOf func(handler string) string) (store.Snapshot, error)
	CommitBatch(ctx context.Context, p int, grant lease.Grant, b *store.Batch) error
	cancelStore
}

// pluginCaller runs jobs on the handler plugins.
type pluginCaller interface {
	Handle(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error)
	Handlers() map[string]host.HandlerInfo
}

// partitionGrants is what the executor needs of the grants table.
type partitionGrants interface {
	active() map[int]lease.Grant
	activeGrant(p int) (lease.Grant, bool)
	drop(p int, grant lease.Grant)
	runBatch(p int, grant lease.Grant, f func()) bool
}

// commitObserver hears of every commit: the call router wakes its
// waiters and keeps its state cache current, the relay moves emitted jobs.
type commitObserver interface {
	// statesWritten follows a queue commit's state writes.
	statesWritten(writes []store.StateWrite)
	// committed follows every commit, of a batch or of a direct call.
	committed(p int, jobs []store.Job, b *store.Batch)
}

// executor is the partition executor: for every partition it owns it
// reads the jobs, plans the batch, calls the plugin and commits under the
// partition's grant; a fenced commit drops the partition.
type executor struct {
	cfg     Config
	log     *slog.Logger
	store   batchStore
	plugins pluginCaller
	grants  partitionGrants
	lease   interface{ Valid() bool } // commits only while the lease is trusted
	commits commitObserver
	metrics *workerMetrics  // nil: not measured
	tracer  *tracing.Tracer // nil: tracing off
	// catalog knows the handlers other workers serve, so a job may emit
	// to them; nil: only this worker's handlers.
	catalog interface {
		known(handler string, local map[string]host.HandlerInfo) bool
		unknownEmit(parent, handler string, local map[string]host.HandlerInfo) error
	}

	// flow holds back jobs of paused or limited handlers; nil holds
	// back nothing.
	flow *flowControl

	lastLoop  atomic.Int64 // unix nanos of the last executor round
	committed atomic.Int64 // jobs done
	fenced    atomic.Int64 // commits refused by the fence
	retried   atomic.Int64 // jobs scheduled for another attempt
	dead      atomic.Int64 // jobs dead-lettered

	running running     // the jobs of the batches in flight and the direct calls
	cancels cancelMarks // partitions with cancels to apply
	sweeps  sweepGate   // direct calls' sweeps against batches' loaded states
}

func newExecutor(cfg Config, log *slog.Logger, st batchStore, plugins pluginCaller, g partitionGrants, lh interface{ Valid() bool }, commits commitObserver) *executor {
	e := &executor{cfg: cfg, log: log, store: st, plugins: plugins, grants: g, lease: lh, commits: commits}
	e.lastLoop.Store(time.Now().UnixNano())
	return e
}

// lastRound is when the executor loop last turned (or a plugin call
// returned): a loop stuck longer than the stall timeout lets the lease go.
func (e *executor) lastRound() time.Time { return time.Unix(0, e.lastLoop.Load()) }

// counts says how many jobs committed and how many commits were fenced.
func (e *executor) counts() (committed, fenced int64) { return e.committed.Load(), e.fenced.Load() }

// failures says how many jobs were retried and how many dead-lettered.
func (e *executor) failures() (retried, dead int64) { return e.retried.Load(), e.dead.Load() }

// releaseMax is how many due delayed jobs a partition releases per round.
const releaseMax = 1024

// partitionRun is what the executor keeps of one partition, for one grant
// only: a new grant starts a new run. It keeps no stream position: every
// read starts at the stream's head, since a commit acks all it read. So
// if Redis loses writes (and gives back entries this worker committed),
// the next read finds them again.
type partitionRun struct {
	grant    lease.Grant // the grant the run belongs to
	failures int         // consecutive failed attempts at the current batch
	// isolate runs the next batch key by key: the last one failed and could
	// not be split because the plugin was down by then.
	isolate bool
	// checkFinished loads the job statuses before the next batch: the
	// last commit was refused because a job in it was finished already.
	checkFinished bool
	retryAt       time.Time // back off until then
}

// dueEvery is how often, at most, the executor looks for due delayed and
// parked jobs (a look costs two commands per owned partition); an idle
// one looks once per read block.
const dueEvery = 10 * time.Millisecond

// batchDone reports a partition batch's end to the executor loop.
type batchDone struct {
	p   int
	run *partitionRun
	ok  bool
}

// run keeps every owned partition's batches going: it reads the
// streams of the partitions with no batch in flight in one read (blocking
// only when none is in flight), and processes each partition batch on its
// own, with its due parked jobs, one plugin call (split only when it fails)
// and one fenced commit. A partition is read again as soon as its batch
// has committed, without waiting for the others', so a slow batch holds
// back only its own partition.
func (e *executor) run(ctx context.Context) {
	runs := map[int]*partitionRun{}
	inflight := map[int]bool{}
	done := make(chan batchDone, 256)
	sem := make(chan struct{}, e.cfg.Parallel)
	finish := func(d batchDone) {
		delete(inflight, d.p)
		r := d.run
		if d.ok {
			r.failures = 0
		} else {
			r.failures++
			r.retryAt = time.Now().Add(backoff(r.failures))
		}
	}
	defer func() {
		for len(inflight) > 0 {
			finish(<-done)
		}
	}()
	var lastDue, lastCancelSweep time.Time
	for ctx.Err() == nil {
		e.lastLoop.Store(time.Now().UnixNano())
		for more := true; more; {
			select {
			case d := <-done:
				finish(d)
			default:
				more = false
			}
		}
		owned := e.grants.active()
		now := time.Now()
		cursors := make(map[int]string, len(owned))
		parts := make([]int, 0, len(owned))
		for p, grant := range owned {
			r := runs[p]
			if r == nil || r.grant != grant {
				if inflight[p] {
					continue // the old grant's batch is still ending
				}
				// New grant: nothing of the last grant's run carries over.
				r = &partitionRun{grant: grant}
				runs[p] = r
			}
			if !inflight[p] && now.After(r.retryAt) {
				cursors[p] = store.StartID
				parts = append(parts, p)
			}
		}
		for p := range runs {
			if _, ok := owned[p]; !ok && !inflight[p] {
				delete(runs, p)
			}
		}
		if len(cursors) == 0 {
			e.waitBatch(ctx, done, inflight, finish)
			continue
		}
		var parked map[int]bool
		if now.Sub(lastDue) >= dueEvery {
			var delayed map[int]bool
			var err error
			delayed, parked, err = e.store.Due(ctx, parts, now.UnixMilli())
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("looking for due jobs failed", "err", err)
					sleep(ctx, e.cfg.ReadBlock)
				}
				continue
			}
			lastDue = now
			for p := range delayed {
				if _, err := e.store.ReleaseDue(ctx, p, runs[p].grant, now.UnixMilli(), releaseMax); err != nil {
					if isFenced(err) {
						e.grants.drop(p, runs[p].grant)
					}
					e.log.Warn("releasing delayed jobs failed", "partition", p, "err", err)
				}
			}
		}
		if now.Sub(lastCancelSweep) >= cancelSweepEvery {
			e.sweepCancels(ctx, parts)
			lastCancelSweep = now
		}
		for _, p := range parts {
			if _, ok := parked[p]; !ok && e.cancels.isFresh(p) {
				// Cancels were asked: p gets a batch, with no parked job due.
				if parked == nil {
					parked = map[int]bool{}
				}
				parked[p] = false
			}
		}
		block := e.cfg.ReadBlock
		if len(parked) > 0 || len(inflight) > 0 {
			block = -1 // parked jobs are due, or batches end soon: do not wait
		}
		read, err := e.store.Read(ctx, cursors, e.cfg.BatchSize, block)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("read failed", "err", err)
				sleep(ctx, e.cfg.ReadBlock)
			}
			continue
		}
		for p := range parked {
			if _, ok := read[p]; !ok {
				if read == nil {
					read = map[int][]store.Job{}
				}
				read[p] = nil
			}
		}
		if len(read) == 0 {
			if len(inflight) > 0 {
				// The read did not block: wait for a batch to end instead.
				e.waitBatch(ctx, done, inflight, finish)
			}
			continue
		}
		owned = e.grants.active() // a release may have happened during the read
		for p, jobs := range read {
			r := runs[p]
			if grant, ok := owned[p]; !ok || r == nil || r.grant != grant {
				continue
			}
			inflight[p] = true
			sem <- struct{}{}
			go func(p int, jobs []store.Job, r *partitionRun) {
				d := batchDone{p: p, run: r}
				e.grants.runBatch(p, r.grant, func() {
					d.ok = e.processPartition(ctx, p, r, jobs, parked[p])
				})
				<-sem // before the report: the loop may be waiting for a slot
				done <- d
			}(p, jobs, r)
		}
	}
}

// waitBatch waits for a batch in flight to end, or a read block when none
// is, so a loop with nothing to read does not spin.
func (e *executor) waitBatch(ctx context.Context, done <-chan batchDone, inflight map[int]bool, finish func(batchDone)) {
	t := time.NewTimer(e.cfg.ReadBlock)
	defer t.Stop()
	if len(inflight) == 0 {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return
	}
	select {
	case d := <-done:
		finish(d)
	case <-ctx.Done():
	case <-t.C:
	}
}

// processPartition runs and commits one partition batch: its due parked
// jobs and the stream jobs read. False means it was not committed and will
// be read again.
func (e *executor) processPartition(ctx context.Context, p int, r *partitionRun, stream []store.Job, parkedDue bool) bool {
	log := e.log.With("partition", p, "grant", r.grant.String(), "stream_jobs", len(stream), "first_stream_job", firstJob(stream))
	now := time.Now()
	var keyRuns []store.KeyRun
	if parkedDue {
		var err error
		if keyRuns, err = e.store.LoadParked(ctx, p, now.UnixMilli(), e.cfg.BatchSize, e.cfg.BatchSize); err != nil {
			log.Warn("load parked jobs failed", "err", err)
			return false
		}
	}
	var cw *cancelWork
	if e.cancels.take(p) {
		var err error
		if cw, err = e.loadCancels(ctx, p, keyRuns, stream); err != nil {
			log.Warn("load cancels failed", "err", err)
			e.cancels.mark(p)
			return false
		}
		if cw != nil {
			keyRuns = append(keyRuns, cw.runs...)
		}
	}
	all := append([]store.Job(nil), stream...)
	for _, kr := range keyRuns {
		all = append(all, kr.Jobs...)
	}
	if len(all) == 0 && cw.empty() {
		e.cancels.keep(p, cw != nil && cw.left > 0)
		return true
	}
	committed := false
	defer func() { e.cancelled(ctx, p, cw, all, committed) }()
	load := e.store.LoadOptimistic
	if r.checkFinished {
		load = e.store.Load
	}
	hs := e.plugins.Handlers()
	entities := entityOf(hs)
	sweepTok := e.sweeps.batchStart(p)
	defer e.sweeps.batchEnd(p)
	snap, err := load(ctx, p, all, entities)
	if err != nil {
		log.Warn("load failed", "err", err)
		return false
	}
	wk := planWork(keyRuns, stream, snap)
	cw.apply(wk)
	jobs, outcomes := unserved(wk, hs)
	adm, err := e.flow.admit(ctx, jobs, hs, now)
	if err != nil {
		log.Warn("flow control could not ask Redis for slots or tokens; batch will be read again", "err", err)
		return false
	}
	if len(adm.wait) > 0 {
		wk.flowUntil = adm.wait
		for id := range adm.wait {
			outcomes[id] = waitFlow
		}
	}
	jobs = adm.run
	e.running.start(p, jobs)
	defer e.running.end(p)
	bt := startBatchTrace(ctx, e.tracer, p, jobs)
	var traceErr error = errNotCommitted
	defer func() { bt.end(outcomes, traceErr) }()
	if len(jobs) > 0 {
		ran, progress, callErr := e.runIsolated(ctx, jobs, hs, snap, r.isolate, bt)
		e.flow.release(ctx, adm)
		r.isolate = callErr != nil && isOutage(callErr)
		if !progress {
			log.Warn("plugin unavailable; batch will be read again", "jobs", len(jobs), "first_job", jobs[0].ID, "err", callErr)
			traceErr = callErr
			return false
		}
		if callErr != nil {
			log.Warn("plugin call failed; jobs isolated by key", "jobs", len(jobs), "err", callErr)
		}
		if len(outcomes) == 0 {
			outcomes = ran // the usual batch: every job ran
		} else {
			maps.Copy(outcomes, ran)
		}
	}
	batch, err := buildBatch(wk, outcomes, e.batchPolicy(now, hs), entities)
	if err != nil {
		log.Error("bad plugin reply", "err", err)
		return false
	}
	cw.addTo(batch)
	batch.Jobs = all
	if e.sweeps.loadedStatesHold(p, sweepTok) {
		markLoaded(batch, snap)
	}
	bt.emits(batch)
	if !e.lease.Valid() {
		log.Warn("lease not trusted any more; not committing")
		return false
	}
	if g, ok := e.grants.activeGrant(p); !ok || g != r.grant {
		log.Info("partition given up during the batch; not committing")
		return false
	}
	commitSpans := bt.startCommit(p)
	err = e.commitObserved(ctx, p, r.grant, batch)
	endSpans(commitSpans, err)
	traceErr = err
	if err != nil {
		switch {
		case errors.Is(err, store.ErrNotReplicated):
			// Committed on the primary; its waiters are not told, as a
			// failover could still lose it. They read the result later.
			log.Warn("commit not acknowledged by the replicas in time; its callers are not told", "err", err)
			e.commits.statesWritten(batch.States)
			committed = true
			traceErr = nil
			return true
		case isFenced(err):
			e.fenced.Add(1)
			e.grants.drop(p, r.grant)
			log.Warn("commit fenced: another worker owns the partition now; stopped it", "err", err)
		case errors.Is(err, store.ErrSplitting):
			log.Debug("commit refused: the partition is being split; its split ends it here", "err", err)
		case errors.Is(err, store.ErrAlreadyFinished):
			r.checkFinished = true
			log.Warn("commit refused: a job in it was already finished; reloading with job statuses", "err", err)
		default:
			log.Warn("commit failed", "err", err)
		}
		return false
	}
	r.checkFinished = false
	committed = true
	e.commits.statesWritten(batch.States)
	e.done(p, all, batch)
	for _, d := range batch.Dead {
		log.Warn("job dead-lettered", "job", d.Job.ID, "handler", d.Job.Handler, "attempt", d.Job.Attempt, "err", d.Error)
	}
	logWaiting(log, wk.waiting, e.cfg.UnknownHandlerWait, now)
	return true
}

// unserved sets apart, per key, the first job whose handler this worker
// does not serve (hs): it gets the waitHandler outcome and neither it nor
// the key's later jobs run. It returns the jobs to run and the outcomes
// of the waiting ones.
//
// A job that deletes its key's state (store.DeleteHandler) runs no plugin:
// it gets the deleteState outcome, and the key's later jobs wait for the
// next batch (notRun), which loads the state the delete left: none.
func unserved(wk *work, hs map[string]host.HandlerInfo) ([]store.Job, map[string]*pluginpb.Outcome) {
	out := map[string]*pluginpb.Outcome{}
	n := 0
	for _, kw := range wk.keys {
		n += len(kw.run)
	}
	run := make([]store.Job, 0, n)
	for _, kw := range wk.keys {
		for i, j := range kw.run {
			if j.Handler == store.DeleteHandler {
				out[j.ID] = deleteState
				if i+1 < len(kw.run) {
					out[kw.run[i+1].ID] = notRun
				}
				break
			}
			if _, ok := hs[j.Handler]; !ok {
				out[j.ID] = waitHandler
				break
			}
			run = append(run, j)
		}
	}
	return run, out
}

// logWaiting says, per handler, how many jobs of a batch wait for a
// worker that serves it: a warning when some start waiting, else only at
// debug level, so a long wait does not flood the log.
func logWaiting(log *slog.Logger, waiting []store.Job, bound time.Duration, now time.Time) {
	type group struct {
		n, fresh int
		first    store.Job
	}
	groups := map[string]*group{}
	var order []string
	for _, j := range waiting {
		g := groups[j.Handler]
		if g == nil {
			g = &group{first: j}
			groups[j.Handler] = g
			order = append(order, j.Handler)
		}
		g.n++
		if j.WaitingSince == now.UnixMilli() {
			g.fresh++
		}
	}
	for _, h := range order {
		g := groups[h]
		level := slog.LevelDebug
		if g.fresh > 0 {
			level = slog.LevelWarn
		}
		waited := now.Sub(time.UnixMilli(g.first.WaitingSince)).Round(time.Millisecond)
		log.Log(context.Background(), level, "this worker does not serve the handler of jobs it owns; they wait, without spending attempts, for an owner that does",
			"handler", h, "jobs", g.n, "first_job", g.first.ID, "waited", waited, "dead_letter_after", bound)
	}
}

// done follows every commit of partition p, of a batch or of a direct
// call: it counts the jobs and tells the observer.
func (e *executor) done(p int, jobs []store.Job, b *store.Batch) {
	e.committed.Add(int64(len(b.Done)))
	e.retried.Add(int64(len(b.Retries)))
	e.dead.Add(int64(len(b.Dead)))
	e.metrics.observeBatch(jobs, b)
	e.commits.committed(p, jobs, b)
}

// errNotRun says a Call's job was neither run nor committed: the call
// takes the queue instead.
var errNotRun = errors.New("call not run directly")

// runCall runs one Call's job and commits it under grant with guard, so
// the commit is refused if its key's line or state changed meanwhile.
// errNotRun means nothing was written; any other error is the commit's.
func (e *executor) runCall(ctx context.Context, p int, grant lease.Grant, j store.Job, guard *store.Guard, now time.Time) (*store.Batch, error) {
	hs := e.plugins.Handlers()
	entities := entityOf(hs)
	ref := store.EntityRef{Type: entities(j.Handler), Key: j.Key}
	snap := store.Snapshot{States: map[store.EntityRef][]byte{ref: guard.State}}
	wk := &work{keys: []*keyWork{{key: j.Key, run: []store.Job{j}}}}
	adm, err := e.flow.admit(ctx, []store.Job{j}, hs, now)
	if err != nil || len(adm.run) == 0 {
		return nil, errNotRun // paused or at a limit: the queue keeps the job, and it waits there
	}
	e.running.startCall(j)
	defer e.running.endCall(j.ID)
	outcomes, progress, _ := e.runIsolated(ctx, []store.Job{j}, hs, snap, false, nil)
	e.flow.release(ctx, adm)
	if !progress {
		return nil, errNotRun // the plugin is down: the queue keeps the job
	}
	b, err := buildBatch(wk, outcomes, e.batchPolicy(now, hs), entities)
	if err != nil {
		return nil, errNotRun
	}
	b.Unparked = nil // never parked: there is no parked entry to drop
	b.Guard, b.Jobs = guard, []store.Job{j}
	for i := range b.States {
		// The guard makes the commit check the state is as it was.
		b.States[i].Existed = guard.HasState && b.States[i].Entity == ref
	}
	if !e.lease.Valid() {
		return nil, errNotRun
	}
	// Under runBatch, as a batch: a partition suspended for its split
	// (or given up) meanwhile gets no commit, and its suspension waits for
	// one in flight.
	var err2 error
	ran := e.grants.runBatch(p, grant, func() {
		if e.cfg.routing().PartitionOf(j.Key) != p {
			err2 = errNotRun // p was split while the plugin ran: the key is elsewhere now
			return
		}
		sweep := e.sweeps.callStart(p)
		b.NoSweep = !sweep
		err2 = e.commitObserved(ctx, p, grant, b)
		e.sweeps.callEnd(p, sweep)
	})
	if !ran || errors.Is(err2, errNotRun) {
		return nil, errNotRun
	}
	if err := err2; err != nil {
		if isFenced(err) {
			e.fenced.Add(1)
			e.grants.drop(p, grant)
		}
		return nil, err
	}
	e.done(p, []store.Job{j}, b)
	for _, d := range b.Dead {
		e.log.Warn("job dead-lettered", "partition", p, "grant", grant.String(), "job", d.Job.ID, "handler", d.Job.Handler,
			"attempt", d.Job.Attempt, "err", d.Error, "call", true)
	}
	return b, nil
}

// commitObserved is CommitBatch, timed.
func (e *executor) commitObserved(ctx context.Context, p int, grant lease.Grant, b *store.Batch) error {
	if e.metrics == nil {
		return e.store.CommitBatch(ctx, p, grant, b)
	}
	start := time.Now()
	err := e.store.CommitBatch(ctx, p, grant, b)
	e.metrics.m.ObserveCommit(time.Since(start))
	return err
}

// handleObserved is the batched plugin call, timed.
func (e *executor) handleObserved(ctx context.Context, req *pluginpb.HandleRequest) (*pluginpb.HandleResponse, error) {
	if e.metrics == nil {
		return e.plugins.Handle(ctx, req)
	}
	start := time.Now()
	resp, err := e.plugins.Handle(ctx, req)
	e.metrics.m.ObserveHandlerCall(time.Since(start))
	return resp, err
}

// runIsolated runs jobs on the plugins in one call. When that call fails
// (or isolate says the last one did), each key's first job runs alone, one
// key after another, and the keys' later jobs wait for the next batch: a
// job that panics, hangs or crashes its plugin is found exactly and costs
// only itself an attempt, while every other key's first job commits. A
// plugin that is down (often restarting after the failure) blames nobody:
// the keys not run yet are marked not run and err says the plugin is
// unavailable, so the next batch is isolated again. progress is false when
// no job got an outcome, so there is nothing to commit.
func (e *executor) runIsolated(ctx context.Context, jobs []store.Job, hs map[string]host.HandlerInfo, snap store.Snapshot, isolate bool, bt *batchTrace) (out map[string]*pluginpb.Outcome, progress bool, err error) {
	out = make(map[string]*pluginpb.Outcome, len(jobs))
	if !isolate {
		if err = e.call(ctx, jobs, hs, snap, out, bt); err == nil {
			return out, true, nil
		}
		if isOutage(err) {
			return out, false, err
		}
	}
	down := false
	for i, j := range jobs {
		if i > 0 && j.Key == jobs[i-1].Key {
			out[j.ID] = notRun // waits for its key's first job
			continue
		}
		if down || ctx.Err() != nil {
			out[j.ID] = notRun
			continue
		}
		jerr := e.call(ctx, jobs[i:i+1], hs, snap, out, bt)
		switch {
		case jerr == nil:
			progress = true
		case isOutage(jerr):
			down, err = true, jerr
			out[j.ID] = notRun
		default:
			progress, err = true, jerr
			out[j.ID] = &pluginpb.Outcome{JobId: j.ID, Status: pluginpb.Outcome_RETRY, Error: jerr.Error()}
		}
	}
	return out, progress, err
}

// isOutage says whether a plugin call failed without running: the plugin
// is down or restarting. No job is to blame, so no attempt is counted.
func isOutage(err error) bool {
	return errors.Is(err, host.ErrPluginUnavailable) || errors.Is(err, host.ErrNotStarted) || errors.Is(err, host.ErrStopped)
}

// call runs jobs in one plugin call with their deadline and records their
// outcomes in out. hs is the handler table the batch was planned with.
func (e *executor) call(ctx context.Context, jobs []store.Job, hs map[string]host.HandlerInfo, snap store.Snapshot, out map[string]*pluginpb.Outcome, bt *batchTrace) error {
	if d := callTimeout(jobs, hs); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	req := buildRequest(jobs, snap, entityOf(hs))
	spans := bt.startPlugin(req)
	resp, err := e.handleObserved(ctx, req)
	e.lastLoop.Store(time.Now().UnixNano()) // a slow plugin is not a stalled loop
	if spans != nil {
		endSpans(spans, err)
	}
	if err != nil {
		return err
	}
	if len(resp.Outcomes) != len(jobs) {
		return errBadReply
	}
	// The outcomes come in the jobs' order (the plugin host checks it), so
	// each is matched by its place; a reply in another order is matched
	// by id.
	for i, j := range jobs {
		if resp.Outcomes[i].JobId != j.ID {
			return matchByID(jobs, resp.Outcomes, out)
		}
	}
	for i, j := range jobs {
		o := resp.Outcomes[i]
		if o.Status == pluginpb.Outcome_STATUS_UNSPECIFIED {
			return errBadReply
		}
		out[j.ID] = o
	}
	return nil
}

// matchByID records each job's outcome, found by its id, in out.
func matchByID(jobs []store.Job, outcomes []*pluginpb.Outcome, out map[string]*pluginpb.Outcome) error {
	got := make(map[string]*pluginpb.Outcome, len(jobs))
	for _, o := range outcomes {
		got[o.JobId] = o
	}
	for _, j := range jobs {
		o, ok := got[j.ID]
		if !ok || o.Status == pluginpb.Outcome_STATUS_UNSPECIFIED {
			return errBadReply
		}
		out[j.ID] = o
	}
	return nil
}

var errBadReply = errors.New("plugin reply does not match the jobs sent")

// errNotCommitted marks the batch spans of a batch left uncommitted, to be
// read again.
var errNotCommitted = errors.New("batch not committed; it will be read again")

// callTimeout is the deadline of a call when a job in it overrides its
// handler's timeout: the longest of the jobs' own timeouts, each at most
// its handler's. Zero leaves the handlers' timeouts to the plugin host.
func callTimeout(jobs []store.Job, hs map[string]host.HandlerInfo) time.Duration {
	var d time.Duration
	override := false
	for _, j := range jobs {
		t := hs[j.Handler].Timeout
		if j.TimeoutMs > 0 {
			override = true
			o := time.Duration(j.TimeoutMs) * time.Millisecond
			if t == 0 || o < t {
				t = o
			}
		}
		if t == 0 {
			return 0 // the host's default applies to this job: do not cut it shorter
		}
		d = max(d, t)
	}
	if !override {
		return 0
	}
	return d
}

func (e *executor) retryPolicy(now time.Time) retryPolicy {
	return retryPolicy{maxAttempts: e.jobMaxAttempts, base: e.cfg.RetryBackoff, max: e.cfg.RetryBackoffMax, now: now,
		handlerWait: e.cfg.UnknownHandlerWait}
}

// batchPolicy is retryPolicy, refusing emits to handlers neither this
// worker (hs) nor any other serves.
func (e *executor) batchPolicy(now time.Time, hs map[string]host.HandlerInfo) retryPolicy {
	rp := e.retryPolicy(now)
	rp.checkEmit = func(parent, handler string) error {
		if hs[handler].Broadcast {
			return fmt.Errorf("job %s emitted a job for broadcast handler %q, which runs only by coordinator broadcast; nothing of this attempt was committed", parent, handler)
		}
		if e.catalog != nil {
			if e.catalog.known(handler, hs) {
				return nil
			}
			return e.catalog.unknownEmit(parent, handler, hs)
		}
		if _, ok := hs[handler]; ok {
			return nil
		}
		return fmt.Errorf("job %s emitted a job for handler %q, which this worker does not serve; nothing of this attempt was committed", parent, handler)
	}
	rp.stateTTL = func(handler string) time.Duration { return hs[handler].StateTTL }
	return rp
}

// jobMaxAttempts is a job's own limit when its submitter set one, else its
// handler's.
func (e *executor) jobMaxAttempts(j store.Job) int {
	if j.MaxAttempts > 0 {
		return j.MaxAttempts
	}
	if h, ok := e.plugins.Handlers()[j.Handler]; ok && h.MaxAttempts > 0 {
		return h.MaxAttempts
	}
	return e.cfg.MaxAttempts
}

func backoff(failures int) time.Duration {
	d := 50 * time.Millisecond << min(failures, 6)
	return min(d, 2*time.Second)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
