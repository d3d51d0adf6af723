package worker

import (
	"context"
	"errors"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins"
	"github.com/corralhq/corral/plugins/host"
	"github.com/corralhq/corral/plugins/pluginpb"
)

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

// executorLoop keeps every owned partition's batches going: it reads the
// streams of the partitions with no batch in flight in one read (blocking
// only when none is in flight), and processes each partition batch on its
// own, with its due parked jobs, one plugin call (split only when it fails)
// and one fenced commit. A partition is read again as soon as its batch
// has committed, without waiting for the others', so a slow batch holds
// back only its own partition.
func (w *Worker) executorLoop(ctx context.Context) {
	runs := map[int]*partitionRun{}
	inflight := map[int]bool{}
	done := make(chan batchDone, 256)
	sem := make(chan struct{}, w.cfg.Parallel)
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
	var lastDue time.Time
	for ctx.Err() == nil {
		w.lastLoop.Store(time.Now().UnixNano())
		for more := true; more; {
			select {
			case d := <-done:
				finish(d)
			default:
				more = false
			}
		}
		owned := w.ownedSnapshot()
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
			w.waitBatch(ctx, done, inflight, finish)
			continue
		}
		var parked map[int]bool
		if now.Sub(lastDue) >= dueEvery {
			var delayed map[int]bool
			var err error
			delayed, parked, err = w.store.Due(ctx, parts, now.UnixMilli())
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("looking for due jobs failed", "err", err)
					sleep(ctx, w.cfg.ReadBlock)
				}
				continue
			}
			lastDue = now
			for p := range delayed {
				if _, err := w.store.ReleaseDue(ctx, p, runs[p].grant, now.UnixMilli(), releaseMax); err != nil {
					if isFenced(err) {
						w.drop(p, runs[p].grant)
					}
					w.log.Warn("releasing delayed jobs failed", "partition", p, "err", err)
				}
			}
		}
		block := w.cfg.ReadBlock
		if len(parked) > 0 || len(inflight) > 0 {
			block = -1 // parked jobs are due, or batches end soon: do not wait
		}
		read, err := w.store.Read(ctx, cursors, w.cfg.BatchSize, block)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("read failed", "err", err)
				sleep(ctx, w.cfg.ReadBlock)
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
				w.waitBatch(ctx, done, inflight, finish)
			}
			continue
		}
		owned = w.ownedSnapshot() // a release may have happened during the read
		for p, jobs := range read {
			r := runs[p]
			if grant, ok := owned[p]; !ok || r == nil || r.grant != grant {
				continue
			}
			inflight[p] = true
			sem <- struct{}{}
			go func(p int, jobs []store.Job, r *partitionRun) {
				d := batchDone{p: p, run: r}
				w.batchMu.RLock()
				if grant, ok := w.grantOf(p); ok && grant == r.grant {
					d.ok = w.processPartition(ctx, p, r, jobs, parked[p])
				}
				w.batchMu.RUnlock()
				<-sem // before the report: the loop may be waiting for a slot
				done <- d
			}(p, jobs, r)
		}
	}
}

// waitBatch waits for a batch in flight to end, or a read block when none
// is, so a loop with nothing to read does not spin.
func (w *Worker) waitBatch(ctx context.Context, done <-chan batchDone, inflight map[int]bool, finish func(batchDone)) {
	t := time.NewTimer(w.cfg.ReadBlock)
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
func (w *Worker) processPartition(ctx context.Context, p int, r *partitionRun, stream []store.Job, parkedDue bool) bool {
	log := w.log.With("partition", p, "grant", r.grant.String(), "stream_jobs", len(stream), "first_stream_job", firstJob(stream))
	now := time.Now()
	var keyRuns []store.KeyRun
	if parkedDue {
		var err error
		if keyRuns, err = w.store.LoadParked(ctx, p, now.UnixMilli(), w.cfg.BatchSize, w.cfg.BatchSize); err != nil {
			log.Warn("load parked jobs failed", "err", err)
			return false
		}
	}
	all := append([]store.Job(nil), stream...)
	for _, kr := range keyRuns {
		all = append(all, kr.Jobs...)
	}
	if len(all) == 0 {
		return true
	}
	load := w.store.LoadOptimistic
	if r.checkFinished {
		load = w.store.Load
	}
	snap, err := load(ctx, p, all, plugins.EntityType)
	if err != nil {
		log.Warn("load failed", "err", err)
		return false
	}
	wk := planWork(keyRuns, stream, snap)
	jobs := wk.runnable()
	outcomes := map[string]*pluginpb.Outcome{}
	if len(jobs) > 0 {
		var progress bool
		var callErr error
		outcomes, progress, callErr = w.runIsolated(ctx, jobs, snap, r.isolate)
		r.isolate = callErr != nil && isOutage(callErr)
		if !progress {
			log.Warn("plugin unavailable; batch will be read again", "jobs", len(jobs), "first_job", jobs[0].ID, "err", callErr)
			return false
		}
		if callErr != nil {
			log.Warn("plugin call failed; jobs isolated by key", "jobs", len(jobs), "err", callErr)
		}
	}
	batch, err := buildBatch(wk, outcomes, w.retryPolicy(now))
	if err != nil {
		log.Error("bad plugin reply", "err", err)
		return false
	}
	if !w.keeper.Valid() {
		log.Warn("lease not trusted any more; not committing")
		return false
	}
	if g, ok := w.grantOf(p); !ok || g != r.grant {
		log.Info("partition given up during the batch; not committing")
		return false
	}
	if err := w.commitObserved(ctx, p, r.grant, batch); err != nil {
		switch {
		case errors.Is(err, store.ErrNotReplicated):
			// Committed on the primary; its waiters are not told, as a
			// failover could still lose it. They read the result later.
			log.Warn("commit not acknowledged by the replicas in time; its callers are not told", "err", err)
			w.states.committed(batch.States)
			return true
		case isFenced(err):
			w.fenced.Add(1)
			w.drop(p, r.grant)
			log.Warn("commit fenced: another worker owns the partition now; stopped it", "err", err)
		case errors.Is(err, store.ErrAlreadyFinished):
			r.checkFinished = true
			log.Warn("commit refused: a job in it was already finished; reloading with job statuses", "err", err)
		default:
			log.Warn("commit failed", "err", err)
		}
		return false
	}
	r.checkFinished = false
	w.states.committed(batch.States)
	w.committedBatch(p, all, batch)
	for _, d := range batch.Dead {
		log.Warn("job dead-lettered", "job", d.Job.ID, "handler", d.Job.Handler, "attempt", d.Job.Attempt, "err", d.Error)
	}
	return true
}

// committedBatch follows every commit of partition p, of a batch or of a
// direct call: it counts the jobs, wakes the Calls and result waiters of
// the ones finished, and asks the relay to move the emitted jobs.
func (w *Worker) committedBatch(p int, jobs []store.Job, b *store.Batch) {
	w.committed.Add(int64(len(b.Done)))
	w.calls.committed(b)
	w.metrics.observeBatch(jobs, b)
	if len(b.Emits) > 0 {
		select {
		case w.relayReq <- p:
		default:
		}
	}
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
func (w *Worker) runIsolated(ctx context.Context, jobs []store.Job, snap store.Snapshot, isolate bool) (out map[string]*pluginpb.Outcome, progress bool, err error) {
	out = make(map[string]*pluginpb.Outcome, len(jobs))
	if !isolate {
		if err = w.call(ctx, jobs, snap, out); err == nil {
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
		jerr := w.call(ctx, jobs[i:i+1], snap, out)
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
// outcomes in out.
func (w *Worker) call(ctx context.Context, jobs []store.Job, snap store.Snapshot, out map[string]*pluginpb.Outcome) error {
	if d := w.callTimeout(jobs); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	resp, err := w.handleObserved(ctx, buildRequest(jobs, snap))
	w.lastLoop.Store(time.Now().UnixNano()) // a slow plugin is not a stalled loop
	if err != nil {
		return err
	}
	if len(resp.Outcomes) != len(jobs) {
		return errBadReply
	}
	got := make(map[string]*pluginpb.Outcome, len(jobs))
	for _, o := range resp.Outcomes {
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

// callTimeout is the deadline of a call when a job in it overrides its
// handler's timeout: the longest of the jobs' own timeouts, each at most
// its handler's. Zero leaves the handlers' timeouts to the plugin host.
func (w *Worker) callTimeout(jobs []store.Job) time.Duration {
	var d time.Duration
	override := false
	hs := w.handlers.Handlers()
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

func (w *Worker) retryPolicy(now time.Time) retryPolicy {
	return retryPolicy{maxAttempts: w.jobMaxAttempts, base: w.cfg.RetryBackoff, max: w.cfg.RetryBackoffMax, now: now}
}

// jobMaxAttempts is a job's own limit when its submitter set one, else its
// handler's.
func (w *Worker) jobMaxAttempts(j store.Job) int {
	if j.MaxAttempts > 0 {
		return j.MaxAttempts
	}
	return w.maxAttempts(j.Handler)
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
