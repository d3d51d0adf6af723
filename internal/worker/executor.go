package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// A batch none of whose jobs a plugin could run (every call failed) is
// read again this many times before an attempt is counted for the first
// job of each key: an outage of a plugin costs no attempts at first, and a
// job that kills its plugin still ends in the dead-letter store.
const failuresBeforeRetry = 3

// releaseMax is how many due delayed jobs a partition releases per round.
const releaseMax = 1024

type partitionRun struct {
	cursor   string    // last stream id committed (or store.StartID)
	epoch    int64     // epoch the cursor belongs to
	failures int       // consecutive failed attempts at the current batch
	retryAt  time.Time // back off until then
}

// executorLoop releases due delayed jobs, does one blocking read across
// every owned partition's stream, then processes the partition batches in
// parallel, each with its due parked jobs, one plugin call (split only when
// it fails) and one fenced commit.
func (w *Worker) executorLoop(ctx context.Context) {
	runs := map[int]*partitionRun{}
	for ctx.Err() == nil {
		w.lastLoop.Store(time.Now().UnixNano())
		owned := w.ownedSnapshot()
		now := time.Now()
		cursors := make(map[int]string, len(owned))
		parts := make([]int, 0, len(owned))
		for p, epoch := range owned {
			r := runs[p]
			if r == nil || r.epoch != epoch {
				// New grant: everything left in the stream is not done yet.
				r = &partitionRun{cursor: store.StartID, epoch: epoch}
				runs[p] = r
			}
			if now.After(r.retryAt) {
				cursors[p] = r.cursor
				parts = append(parts, p)
			}
		}
		for p := range runs {
			if _, ok := owned[p]; !ok {
				delete(runs, p)
			}
		}
		if len(cursors) == 0 {
			sleep(ctx, w.cfg.ReadBlock)
			continue
		}
		delayed, parked, err := w.store.Due(ctx, parts, now.UnixMilli())
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("looking for due jobs failed", "err", err)
				sleep(ctx, w.cfg.ReadBlock)
			}
			continue
		}
		for p := range delayed {
			if _, err := w.store.ReleaseDue(ctx, p, runs[p].epoch, now.UnixMilli(), releaseMax); err != nil {
				if isFenced(err) {
					w.drop(p, runs[p].epoch)
				}
				w.log.Warn("releasing delayed jobs failed", "partition", p, "err", err)
			}
		}
		block := w.cfg.ReadBlock
		if len(parked) > 0 {
			block = -1 // parked jobs are due: do not wait for new ones
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
		if len(read) > 0 {
			w.processRound(ctx, read, runs)
		}
	}
}

func (w *Worker) processRound(ctx context.Context, read map[int][]store.Job, runs map[int]*partitionRun) {
	w.batchMu.Lock()
	defer w.batchMu.Unlock()
	owned := w.ownedSnapshot() // a release may have happened during the read
	sem := make(chan struct{}, w.cfg.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for p, jobs := range read {
		r := runs[p]
		if epoch, ok := owned[p]; !ok || r == nil || r.epoch != epoch {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(p int, jobs []store.Job, r *partitionRun) {
			defer func() { <-sem; wg.Done() }()
			ok := w.processPartition(ctx, p, r, jobs)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				if len(jobs) > 0 {
					r.cursor = jobs[len(jobs)-1].StreamID
				}
				r.failures = 0
			} else {
				r.failures++
				r.retryAt = time.Now().Add(backoff(r.failures))
			}
		}(p, jobs, r)
	}
	wg.Wait()
}

// processPartition runs and commits one partition batch: its due parked
// jobs and the stream jobs read. False means it was not committed and will
// be read again.
func (w *Worker) processPartition(ctx context.Context, p int, r *partitionRun, stream []store.Job) bool {
	log := w.log.With("partition", p, "epoch", r.epoch, "stream_jobs", len(stream), "first_stream_job", firstJob(stream))
	now := time.Now()
	keyRuns, err := w.store.LoadParked(ctx, p, now.UnixMilli(), w.cfg.BatchSize, w.cfg.BatchSize)
	if err != nil {
		log.Warn("load parked jobs failed", "err", err)
		return false
	}
	all := append([]store.Job(nil), stream...)
	for _, kr := range keyRuns {
		all = append(all, kr.Jobs...)
	}
	if len(all) == 0 {
		return true
	}
	snap, err := w.store.Load(ctx, p, all, EntityOf)
	if err != nil {
		log.Warn("load failed", "err", err)
		return false
	}
	wk := planWork(keyRuns, stream, snap)
	jobs := wk.runnable()
	outcomes := map[string]*pluginpb.Outcome{}
	if len(jobs) > 0 {
		var ran bool
		var callErr error
		outcomes, ran, callErr = w.runIsolated(ctx, jobs, snap)
		if !ran {
			if r.failures+1 < failuresBeforeRetry {
				log.Warn("plugin calls failed; batch will be read again", "jobs", len(jobs), "first_job", jobs[0].ID, "err", callErr)
				return false
			}
			log.Warn("plugin calls failed repeatedly; counting an attempt for the first job of each key", "jobs", len(jobs), "err", callErr)
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
	if err := w.commitObserved(ctx, p, r.epoch, batch); err != nil {
		switch {
		case isFenced(err):
			w.fenced.Add(1)
			w.drop(p, r.epoch)
			log.Warn("commit fenced: another worker owns the partition now; stopped it", "err", err)
		case errors.Is(err, store.ErrAlreadyFinished):
			log.Error("commit refused: a job in it was already finished; reloading", "err", err)
		default:
			log.Warn("commit failed", "err", err)
		}
		return false
	}
	w.committed.Add(int64(len(batch.Done)))
	w.committedHook(p, batch)
	w.metrics.observeBatch(all, batch)
	for _, d := range batch.Dead {
		log.Warn("job dead-lettered", "job", d.Job.ID, "handler", d.Job.Handler, "attempt", d.Job.Attempt, "err", d.Error)
	}
	if len(batch.Emits) > 0 {
		select {
		case w.relayReq <- p:
		default:
		}
	}
	return true
}

// committedHook runs after every successful commit: it wakes the Calls and
// result waiters of the jobs the batch finished.
func (w *Worker) committedHook(p int, b *store.Batch) {
	w.calls.committed(b)
}

// runIsolated runs jobs on the plugins in one call. When the call fails it
// is split by key until the failing keys are found, so a job that panics,
// hangs or crashes its plugin costs only its own key an attempt: the first
// job of a failing key gets RETRY, that key's later jobs are not run, and
// every other key's outcomes are kept. ran is false when no call succeeded.
func (w *Worker) runIsolated(ctx context.Context, jobs []store.Job, snap store.Snapshot) (map[string]*pluginpb.Outcome, bool, error) {
	out := make(map[string]*pluginpb.Outcome, len(jobs))
	var groups [][]store.Job
	for i, j := range jobs {
		if i == 0 || j.Key != jobs[i-1].Key {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], j)
	}
	ran := false
	var lastErr error
	var run func(gs [][]store.Job)
	run = func(gs [][]store.Job) {
		var js []store.Job
		for _, g := range gs {
			js = append(js, g...)
		}
		err := w.call(ctx, js, snap, out)
		if err == nil {
			ran = true
			return
		}
		lastErr = err
		if ctx.Err() != nil {
			return
		}
		if len(gs) > 1 {
			run(gs[:len(gs)/2])
			run(gs[len(gs)/2:])
			return
		}
		g := gs[0]
		first := g[0]
		if len(g) > 1 {
			if err = w.call(ctx, g[:1], snap, out); err == nil {
				ran = true
			}
		}
		if err != nil {
			out[first.ID] = &pluginpb.Outcome{JobId: first.ID, Status: pluginpb.Outcome_RETRY, Error: err.Error()}
		}
		for _, j := range g[1:] {
			out[j.ID] = notRun
		}
	}
	run(groups)
	return out, ran, lastErr
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
