package worker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// The executor's part of a cancel. A cancel is asked in the job's
// partition (store.RequestCancels); the partition's owner applies it in
// the next batch it plans: the job is taken out of the batch before the
// plugin call and finished as cancelled by the same fenced commit (see
// store.Cancels). A job of a batch already in flight is not touched: its
// cancel waits for the next batch, which finds it done (too late) or
// parked for a retry (cancelled then).

// cancelStore is what the executor needs of the store for cancels (part
// of batchStore).
type cancelStore interface {
	PendingCancels(ctx context.Context, parts []int) (map[int]bool, error)
	LoadCancels(ctx context.Context, p int, max int64) ([]store.CancelRequest, error)
	KeyRunsOf(ctx context.Context, p int, heads []store.Job, maxWaiting int64) ([]store.KeyRun, error)
}

// cancelSweepEvery is how often the executor looks in Redis for cancels
// asked in its partitions that it was not told of (asked through another
// worker that could not reach it, or left by the partition's last owner).
const cancelSweepEvery = time.Second

// cancelMarks says which partitions have cancels to apply: a fresh one
// (asked just now, or found by the sweep) gets a batch even with nothing
// to read; a kept one has cancels of jobs further down its queue, which
// each of its batches looks for until the batch that reads them. The zero
// value is ready.
type cancelMarks struct {
	mu    sync.Mutex
	fresh map[int]bool
	kept  map[int]bool
}

// mark says partition p has cancels to apply.
func (m *cancelMarks) mark(p int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fresh == nil {
		m.fresh = map[int]bool{}
	}
	m.fresh[p] = true
}

// isFresh says whether p was marked since its last batch began.
func (m *cancelMarks) isFresh(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fresh[p]
}

// take says whether p's next batch looks for cancels, and clears the
// fresh mark: the batch beginning now sees every cancel asked so far.
func (m *cancelMarks) take(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.fresh[p]
	delete(m.fresh, p)
	return f || m.kept[p]
}

// keep records whether p has cancels left for later batches.
func (m *cancelMarks) keep(p int, left bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !left {
		delete(m.kept, p)
		return
	}
	if m.kept == nil {
		m.kept = map[int]bool{}
	}
	m.kept[p] = true
}

// kick marks p for cancels asked through this worker, if it processes p.
func (e *executor) kickCancels(p int) { e.cancels.mark(p) }

// sweepCancels marks the partitions of parts that have cancels waiting.
func (e *executor) sweepCancels(ctx context.Context, parts []int) {
	pending, err := e.store.PendingCancels(ctx, parts)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("looking for cancels failed", "err", err)
		}
		return
	}
	for p := range pending {
		e.cancels.mark(p)
	}
}

// cancelWork is what one batch does about the cancels of its partition.
type cancelWork struct {
	take map[string]bool // jobs in the batch to cancel instead of running
	runs []store.KeyRun  // the lines of parked jobs to cancel that were not due
	store.Cancels
	unparked []string // the jobs to cancel that were parked or waiting: their bodies go
	left     int      // cancels of jobs not read yet: a later batch applies them
	more     bool     // more cancels wait than one batch loads: the next batch goes on at once
}

// loadCancels reads the cancels waiting in partition p and plans them
// around the batch: the due lines it loaded (runs) and the jobs read
// from the queue (stream).
func (e *executor) loadCancels(ctx context.Context, p int, runs []store.KeyRun, stream []store.Job) (*cancelWork, error) {
	reqs, err := e.store.LoadCancels(ctx, p, e.cfg.BatchSize)
	if err != nil || len(reqs) == 0 {
		return nil, err
	}
	cw := &cancelWork{take: map[string]bool{}, more: int64(len(reqs)) >= e.cfg.BatchSize}
	inBatch := map[string]bool{}
	heldInBatch := map[string]bool{}
	for _, r := range runs {
		heldInBatch[r.Key] = true
		for _, j := range r.Jobs {
			inBatch[j.ID] = true
		}
	}
	for _, j := range stream {
		inBatch[j.ID] = true
	}
	var heads []store.Job
	for _, r := range reqs {
		if r.Place == store.CancelParked && !heldInBatch[r.Job.Key] {
			heads = append(heads, r.Job)
			heldInBatch[r.Job.Key] = true
		}
	}
	if len(heads) > 0 {
		if cw.runs, err = e.store.KeyRunsOf(ctx, p, heads, e.cfg.BatchSize); err != nil {
			return nil, err
		}
		for _, r := range cw.runs {
			for _, j := range r.Jobs {
				inBatch[j.ID] = true
			}
		}
	}
	for _, r := range reqs {
		switch {
		case r.Place == store.CancelFinished || r.Place == store.CancelGone:
			cw.Settled = append(cw.Settled, r.ID)
		case r.Place == store.CancelDelayed:
			cw.Revoked = append(cw.Revoked, r.Job)
		case inBatch[r.ID]:
			cw.take[r.ID] = true
		case r.Place == store.CancelWaiting:
			cw.Unwaited = append(cw.Unwaited, r.Job)
		default:
			cw.left++ // further down the queue
		}
	}
	return cw, nil
}

// apply takes the jobs to cancel out of the batch's work, before the
// plugin call: each key's later jobs run as if they were not there.
func (cw *cancelWork) apply(wk *work) {
	if cw == nil || len(cw.take) == 0 {
		return
	}
	found := 0
	cancel := func(j store.Job) {
		found++
		c := store.Cancellation{JobID: j.ID, Attempts: max(j.Attempt-1, 0)}
		if len(j.Errors) > 0 {
			c.Error = j.Errors[len(j.Errors)-1]
		}
		cw.Cancelled = append(cw.Cancelled, c)
		if j.StreamID == "" {
			// Parked or waiting: its parked entry and body go.
			cw.unparked = append(cw.unparked, j.ID)
		}
	}
	keep := func(js []store.Job) []store.Job {
		return slices.DeleteFunc(js, func(j store.Job) bool {
			if cw.take[j.ID] {
				cancel(j)
				return true
			}
			return false
		})
	}
	for _, kw := range wk.keys {
		kw.run = keep(kw.run)
		kw.deferred = keep(kw.deferred)
	}
	cw.left += len(cw.take) - found // finished meanwhile: the next batch settles them
}

// addTo puts the batch's cancels in its commit.
func (cw *cancelWork) addTo(b *store.Batch) {
	if cw == nil {
		return
	}
	b.Cancels = cw.Cancels
	b.Unparked = append(b.Unparked, cw.unparked...)
}

// empty says there is nothing to commit for the cancels.
func (cw *cancelWork) empty() bool {
	return cw == nil || len(cw.take) == 0 && len(cw.Revoked) == 0 && len(cw.Unwaited) == 0 && len(cw.Settled) == 0
}

// cancelled follows a batch's commit: it counts the jobs cancelled and
// keeps the partition marked while cancels are left for later batches.
func (e *executor) cancelled(ctx context.Context, p int, cw *cancelWork, jobs []store.Job, committed bool) {
	if cw == nil {
		return
	}
	if !committed || cw.more {
		e.cancels.mark(p) // the next batch tries again, or goes on
	}
	if !committed {
		return
	}
	e.cancels.keep(p, cw.left > 0)
	if e.metrics == nil {
		return
	}
	handlerOf := make(map[string]string, len(jobs))
	for _, j := range jobs {
		handlerOf[j.ID] = j.Handler
	}
	count := map[string]int{}
	for _, c := range cw.Cancelled {
		count[handlerOf[c.JobID]]++
	}
	for _, j := range cw.Unwaited {
		count[j.Handler]++
	}
	if len(cw.Revoked) > 0 {
		// A delayed job is cancelled only if it was still delayed.
		if st, ok := e.store.(interface {
			StatusesIn(ctx context.Context, ids []string, partitions []int) ([]store.JobStatus, error)
		}); ok {
			ids, parts := make([]string, len(cw.Revoked)), make([]int, len(cw.Revoked))
			for i, j := range cw.Revoked {
				ids[i], parts[i] = j.ID, p
			}
			if sts, err := st.StatusesIn(ctx, ids, parts); err == nil {
				for i, s := range sts {
					if s.Cancelled {
						count[cw.Revoked[i].Handler]++
					}
				}
			}
		}
	}
	for h, n := range count {
		e.metrics.m.Cancelled(h, n)
	}
}
