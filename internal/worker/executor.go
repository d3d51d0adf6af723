package worker

import (
	"context"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/plugins/pluginpb"
)

// A batch whose plugin call fails this many times in a row is committed
// with one attempt counted for each of its jobs, so a job that crashes its
// plugin ends in the dead-letter stream instead of blocking the partition.
const failuresBeforeRetry = 3

type partitionRun struct {
	cursor   string    // last stream id committed (or store.StartID)
	epoch    int64     // epoch the cursor belongs to
	failures int       // consecutive failed attempts at the current batch
	retryAt  time.Time // back off until then
}

// executorLoop does one blocking read across every owned partition's
// stream, then processes the partition batches in parallel, each with one
// plugin call and one fenced commit.
func (w *Worker) executorLoop(ctx context.Context) {
	runs := map[int]*partitionRun{}
	for ctx.Err() == nil {
		w.lastLoop.Store(time.Now().UnixNano())
		owned := w.ownedSnapshot()
		now := time.Now()
		cursors := make(map[int]string, len(owned))
		for p, epoch := range owned {
			r := runs[p]
			if r == nil || r.epoch != epoch {
				// New grant: everything left in the stream is not done yet.
				r = &partitionRun{cursor: store.StartID, epoch: epoch}
				runs[p] = r
			}
			if now.After(r.retryAt) {
				cursors[p] = r.cursor
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
		read, err := w.store.Read(ctx, cursors, w.cfg.BatchSize, w.cfg.ReadBlock)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("read failed", "err", err)
				sleep(ctx, w.cfg.ReadBlock)
			}
			continue
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
				r.cursor = jobs[len(jobs)-1].StreamID
				r.failures = 0
			} else {
				r.failures++
				r.retryAt = time.Now().Add(backoff(r.failures))
			}
		}(p, jobs, r)
	}
	wg.Wait()
}

// processPartition runs and commits one partition batch; false means it
// was not committed and will be read again.
func (w *Worker) processPartition(ctx context.Context, p int, r *partitionRun, jobs []store.Job) bool {
	log := w.log.With("partition", p, "epoch", r.epoch)
	snap, err := w.store.Load(ctx, p, jobs, EntityOf)
	if err != nil {
		log.Warn("load failed", "err", err)
		return false
	}
	req := buildRequest(jobs, snap)
	resp := &pluginpb.HandleResponse{}
	if len(req.Jobs) > 0 {
		resp, err = w.handleObserved(ctx, req)
		if err != nil {
			if r.failures+1 < failuresBeforeRetry {
				log.Warn("plugin call failed; batch will be read again", "jobs", len(req.Jobs), "first_job", req.Jobs[0].Id, "err", err)
				return false
			}
			log.Warn("plugin call failed repeatedly; counting an attempt for every job", "jobs", len(req.Jobs), "err", err)
			resp = retryAll(req, err)
		}
	}
	batch, err := buildBatch(jobs, snap, resp, w.maxAttempts)
	if err != nil {
		log.Error("bad plugin reply", "err", err)
		return false
	}
	if !w.keeper.Valid() {
		log.Warn("lease not trusted any more; not committing")
		return false
	}
	if err := w.commitObserved(ctx, p, r.epoch, batch); err != nil {
		if isFenced(err) {
			w.fenced.Add(1)
			w.drop(p, r.epoch)
			log.Warn("commit fenced: another worker owns the partition now; stopped it", "err", err)
			return false
		}
		log.Warn("commit failed", "err", err)
		return false
	}
	w.committed.Add(int64(len(batch.Done)))
	w.metrics.observeBatch(jobs, batch)
	w.calls.committed(batch)
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
