package worker

import (
	"cmp"
	"slices"
	"sync"

	"github.com/corralhq/corral/internal/store"
)

// running is what the executor runs now: per partition, the jobs of its
// batch in flight, from the plugin call until the commit ends; and the
// direct calls. "jobs list --state running" and "jobs show" read it, on
// each worker, through ListJobs. The zero value is ready.
type running struct {
	mu      sync.Mutex
	batches map[int][]store.Job
	calls   map[string]store.Job
}

// start records the jobs partition p's batch runs; end forgets them.
func (r *running) start(p int, jobs []store.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[int][]store.Job{}
	}
	r.batches[p] = jobs
}

func (r *running) end(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.batches, p)
}

// startCall records a direct call's job; endCall forgets it.
func (r *running) startCall(j store.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]store.Job{}
	}
	r.calls[j.ID] = j
}

func (r *running) endCall(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.calls, id)
}

// jobs lists what runs now, by partition and then id; in only the
// partitions in (all when nil).
func (r *running) jobs(in func(p int) bool) []store.Job {
	r.mu.Lock()
	var out []store.Job
	for p, js := range r.batches {
		if in == nil || in(p) {
			out = append(out, js...)
		}
	}
	for _, j := range r.calls {
		if in == nil || in(j.Partition) {
			out = append(out, j)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b store.Job) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.ID, b.ID))
	})
	return out
}
