package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
)

// Job record statuses. A queued job's record has none.
const (
	statusDone     = "d"
	statusDead     = "x"
	statusRejected = "n" // finished: its handler refused it; the record's "m" says why
	// statusCancelled: finished by a cancel before it ran (or before its
	// next attempt); nothing else of it was committed.
	statusCancelled = "c"
)

// ErrAlreadyFinished means a commit carried a job id that an earlier
// commit already finished; nothing of the batch was written.
var ErrAlreadyFinished = fmt.Errorf("job already finished")

// ackChunk is how many stream ids one XDEL in the commit script takes.
const ackChunk = 500

// packEmits packs a batch's emitted jobs into one outbox field: each job
// packed as for a stream entry (packJob), after its uvarint length. One
// value to add, log and read back, however many jobs the batch emitted.
func packEmits(emits []Job) []byte {
	size := 0
	for i := range emits {
		size += binary.MaxVarintLen64 + packedSize(&emits[i])
	}
	b := make([]byte, 0, size)
	var one []byte
	for i := range emits {
		one = appendPackedJob(one[:0], &emits[i])
		b = binary.AppendUvarint(b, uint64(len(one)))
		b = append(b, one...)
	}
	return b
}

// StateWrite replaces an entity's state, deletes it, or only renews its
// time to live.
type StateWrite struct {
	Entity EntityRef
	Value  []byte
	// Delete removes the state (and the key from its entity's index);
	// Value is then ignored.
	Delete bool
	// Touch renews the time to live of the state as it is; Value is then
	// ignored. Only with a TTL.
	Touch bool
	// TTL, when positive, makes the state expire after that long without
	// another commit of the entity.
	TTL time.Duration
	// Existed says the state was there when the batch was loaded, and so
	// its key is in its entity's index: a write of it without a TTL
	// leaves the index as it is (the commit's put section). The caller
	// sees to it that nothing drops the key from the index meanwhile:
	// deletes are the owner's own commits, one batch of a partition at a
	// time, and a commit that sweeps out expired states (a direct call's)
	// between the load and the commit must have NoSweep.
	Existed bool
}

// put says w is a write of a loaded state without a TTL (see Existed).
func (w StateWrite) put() bool {
	return w.Existed && !w.Delete && !w.Touch && w.TTL <= 0
}

// op is how the commit script names what w does.
func (w StateWrite) op() string {
	switch {
	case w.Delete:
		return "d"
	case w.Touch:
		return "t"
	}
	return "w"
}

// Result is a job's result, kept in its record for the longer of
// ResultRetention and DoneRetention.
type Result struct {
	JobID string
	Value []byte
}

// DeadJob is a job that exhausted its attempts or failed for good. Its
// Job.Errors is the error history, the last one included.
type DeadJob struct {
	Job   Job
	Error string
}

// Rejection is a job its handler refused for a business reason (out of
// stock, over a limit): it finishes with its reason in its record, like a
// done job, and commits nothing else. It is never retried nor
// dead-lettered, so the same id asked again gets the same answer.
type Rejection struct {
	JobID    string
	Attempts int
	Reason   string
}

// KeyPlan is what a batch does to a key's hold. A key is held while a job
// of it waits for a retry; later jobs of the key wait behind it in order.
type KeyPlan struct {
	Key  string
	Trim int  // waiting jobs the batch read from the front of the list
	Park *Job // the job that holds the key from now on (NotBefore set)
	// Next is set when the key's parked job finished in this batch and no
	// job of it was parked: the next waiting job is parked as due, or the
	// hold is lifted when none waits.
	Next  bool
	Front []Job // jobs to wait right behind Park, in order
	Back  []Job // jobs to wait at the end of the list, in order
}

// Batch is everything one partition batch commits.
type Batch struct {
	Done []string // job ids applied
	// Acked are the stream ids to remove from the queue: every job read,
	// in stream order, with none of the stream between them left out (as
	// one read returns them).
	Acked   []string
	States  []StateWrite
	Results []Result
	Emits   []Job     // follow-up jobs for the outbox (ids already derived)
	Dead    []DeadJob // jobs moved to the dead-letter store
	// Rejected are the jobs their handlers refused: finished with a
	// reason, nothing else of them committed.
	Rejected []Rejection
	// Unparked lists the jobs in Done, Dead or Rejected, or dropped as duplicates,
	// that were parked or waiting behind a hold rather than read from the
	// stream: only they have a parked entry and a body to drop.
	Unparked []string
	Keys     []KeyPlan // holds taken, moved or lifted
	// Attempts is the attempt count of each job in Done, for GetResult.
	Attempts map[string]int
	// Retries lists the jobs parked for another attempt (a view of Keys
	// for logs and metrics).
	Retries []Job
	// Guard, for a job that never was in the queue (a direct call), makes
	// the commit check first that it may still skip the queue.
	Guard *Guard
	Cancels
	// Publications are the messages the batch's done jobs published, in
	// order, sent to their topics' subscribers by the commit.
	Publications []Publication
	// StateSteps are the states the batch's jobs wrote, one per job that
	// wrote one, in order (States has only the last of each entity):
	// what a watcher of an entity sees.
	StateSteps []StateWrite
	// Jobs are the jobs the batch read (from the queue, parked or
	// waiting): the finished log keeps the handler, key and submission
	// time of each one it finishes, for jobs list and show. A job not
	// among them finishes without.
	Jobs []Job
	// NoSweep leaves the states that expired by now in their entities'
	// indexes for a later commit to drop (a few go with each commit
	// otherwise): for a commit that may run between another batch's load
	// and its commit (see StateWrite.Existed).
	NoSweep bool
}

// DeadRecord is a dead letter as stored.
type DeadRecord struct {
	ID        string   `json:"id"`
	Handler   string   `json:"handler"`
	Key       string   `json:"key"`
	Payload   []byte   `json:"payload"`
	Attempts  int      `json:"attempts"`
	Errors    []string `json:"errors"`
	DeadAtMs  int64    `json:"dead_at_ms"`
	Partition int      `json:"partition"`
	// Submitter overrides, kept so a replay runs the same job.
	MaxAttempts int   `json:"max_attempts,omitempty"`
	TimeoutMs   int64 `json:"timeout_ms,omitempty"`
}

// CommitBatch applies b to partition under grant. It returns an error
// wrapping lease.ErrFenced if grant is not the partition's current one
// (another worker has been granted it since, or Redis lost the grant), or ErrAlreadyFinished if a job in it was finished by an earlier
// commit; in both cases nothing was written.
func (s *Store) CommitBatch(ctx context.Context, partition int, grant lease.Grant, b *Batch) error {
	if err := s.registerTypes(ctx, b.States); err != nil {
		return err
	}
	seen := s.commits.seen(partition, grant)
	ks, args, err := s.commitLayout(partition, grant, seen, b, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("store: commit partition %d: %w", partition, err)
	}
	n, err := s.runScript(ctx, commitScript, ks, args...).Int64()
	if err != nil && strings.HasPrefix(err.Error(), "WATCHED") {
		// Watchers came: send it again with its states (a new layout
		// sends them now).
		s.watchers.saw(partition)
		if ks, args, err = s.commitLayout(partition, grant, seen, b, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("store: commit partition %d: %w", partition, err)
		}
		n, err = s.runScript(ctx, commitScript, ks, args...).Int64()
	}
	if err == nil {
		s.commits.saw(partition, grant, n)
	}
	if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
		return fmt.Errorf("store: commit partition %d: %w (%s)", partition, ErrBusy, err.Error())
	}
	if err != nil && strings.HasPrefix(err.Error(), "ALREADY") {
		return fmt.Errorf("store: commit partition %d: %w: %s", partition, ErrAlreadyFinished, strings.TrimPrefix(err.Error(), "ALREADY "))
	}
	if err != nil && strings.HasPrefix(err.Error(), "FENCED") {
		return fmt.Errorf("store: commit partition %d under grant %v: %w (%s)", partition, grant, lease.ErrFenced, err.Error())
	}
	if err != nil && strings.HasPrefix(err.Error(), "SPLITTING") {
		return fmt.Errorf("store: commit partition %d: %w", partition, ErrSplitting)
	}
	if err != nil && strings.HasPrefix(err.Error(), "LOST") {
		return fmt.Errorf("store: commit partition %d under grant %v: %w: %w: Redis has %s of the %d commits acknowledged under it",
			partition, grant, lease.ErrFenced, ErrLostCommits, strings.TrimPrefix(err.Error(), "LOST "), seen)
	}
	if err != nil {
		return fmt.Errorf("store: commit partition %d: %w", partition, err)
	}
	return nil
}

// commitLayout is the commit script's KEYS and ARGV for b at now.
func (s *Store) commitLayout(partition int, grant lease.Grant, seen int64, b *Batch, now int64) ([]string, []any, error) {
	k := keys.For(partition)
	var c commitArgs
	if g := b.Guard; g != nil {
		has := "0"
		if g.HasState {
			has = "1"
		}
		c.add(secGuard, []string{k.State(g.Entity.Type, g.Entity.Key), k.Job(g.ID)},
			g.Entity.Key, directLookahead, has, g.State, g.Hash)
	}
	emitted := emitCounts(b.Emits)
	jobs := make(map[string]int, len(b.Jobs)) // id → index in b.Jobs
	for i := range b.Jobs {
		jobs[b.Jobs[i].ID] = i
	}
	var results map[string][]byte
	if len(b.Results) > 0 {
		results = make(map[string][]byte, len(b.Results))
		for _, r := range b.Results {
			results[r.JobID] = r.Value
		}
	}
	// finish adds the finish of job id: its status, attempts, the jobs it
	// emitted and its answer (a result, a reason; "" for none), and its
	// item of the finished log, with what the log keeps of it (see
	// finished_log.go). A job finished twice in the batch keeps its first
	// finish.
	finishes := len(b.Done) + len(b.Dead) + len(b.Rejected) + len(b.Cancelled)
	c.reserve(secFinish, finishes)
	finished := make([]bool, len(b.Jobs))
	var others map[string]bool // finished ids not among b.Jobs
	log := make([]byte, 0, finishes*48)
	finish := func(id, status string, attempts, emitted int, answer any) {
		if i, ok := jobs[id]; ok {
			if finished[i] {
				return
			}
			finished[i] = true
			j := &b.Jobs[i]
			log = appendLogged(log, status, id, j.SubmittedAt, j.Handler, j.Key)
		} else {
			if others[id] {
				return
			}
			if others == nil {
				others = map[string]bool{}
			}
			others[id] = true
			log = appendLogged(log, status, id, 0, "", "")
		}
		c.add(secFinish, []string{k.Job(id)}, status, finishTail(attempts, emitted), answer)
	}
	for _, id := range b.Done {
		var answer any = ""
		if r, ok := results[id]; ok {
			answer = r
		}
		finish(id, statusDone, max(b.Attempts[id], 1), emitted[id], answer)
		if s.cfg.Audit {
			c.add(secAudit, nil, id)
		}
	}
	for _, d := range b.Dead {
		finish(d.Job.ID, statusDead, max(d.Job.Attempt, 1), 0, "")
		rec, _ := json.Marshal(DeadRecord{ID: d.Job.ID, Handler: d.Job.Handler, Key: d.Job.Key, Payload: d.Job.Payload,
			Attempts: d.Job.Attempt, Errors: d.Job.Errors, DeadAtMs: now, Partition: partition,
			MaxAttempts: d.Job.MaxAttempts, TimeoutMs: d.Job.TimeoutMs})
		c.add(secDead, nil, d.Job.ID, rec)
	}
	for _, r := range b.Rejected {
		finish(r.JobID, statusRejected, max(r.Attempts, 1), 0, r.Reason)
		if s.cfg.Audit {
			c.add(secAudit, nil, r.JobID)
		}
	}
	for _, cn := range b.Cancelled {
		finish(cn.JobID, statusCancelled, cn.Attempts, 0, cn.Error)
		c.add(secSettle, nil, cn.JobID)
	}
	for _, j := range b.Revoked {
		c.add(secRevoke, []string{k.Job(j.ID)}, j.ID, j.Handler, j.Key, itoa(j.SubmittedAt))
	}
	for _, w := range b.Unwaited {
		c.add(secUnwait, []string{k.Waiting(w.Key), k.Job(w.ID)}, w.ID, max(w.Attempt-1, 0), w.Handler, w.Key, itoa(w.SubmittedAt))
	}
	for _, id := range b.Settled {
		c.add(secSettle, nil, id)
	}
	for _, id := range b.Unparked {
		c.add(secUnpark, nil, id)
	}
	c.reserve(secPut, len(b.States))
	for _, w := range b.States {
		if w.put() {
			c.add(secPut, []string{k.State(w.Entity.Type, w.Entity.Key)}, w.Value)
			continue
		}
		c.add(secState, []string{k.State(w.Entity.Type, w.Entity.Key), k.Entities(w.Entity.Type)},
			w.op(), w.Entity.Type, w.Entity.Key, w.Value, w.TTL.Milliseconds())
	}
	if len(b.Acked) > 0 {
		c.add(secAck, nil, strings.Join(b.Acked, " "))
	}
	if len(b.Emits) > 0 {
		for i := range b.Emits {
			b.Emits[i].SubmittedAt, b.Emits[i].Attempt = now, 1
		}
		c.add(secOutbox, nil, packEmits(b.Emits))
	}
	s.addPublications(&c, k, b.Publications)
	s.addStateWatches(&c, partition, k, b.StateSteps)
	for _, kp := range b.Keys {
		wl := k.Waiting(kp.Key)
		if kp.Trim > 0 {
			c.add(secTrim, []string{wl}, kp.Trim)
		}
		for i := len(kp.Front) - 1; i >= 0; i-- {
			c.add(secFront, []string{wl}, kp.Front[i].ID, kp.Front[i].encode())
		}
		for i := range kp.Back {
			c.add(secBack, []string{wl}, kp.Back[i].ID, kp.Back[i].encode())
		}
		switch {
		case kp.Park != nil:
			c.add(secPark, nil, kp.Key, kp.Park.ID, itoa(kp.Park.NotBefore), kp.Park.encode())
		case kp.Next:
			c.add(secNext, []string{wl}, kp.Key)
		}
	}
	var header [numHeaderArgs]any
	header[argGrant], header[argNow], header[argSeen] = grant.String(), itoa(now), seen
	header[argDoneTTL], header[argResultTTL] = int64(s.cfg.DoneRetention.Seconds()), int64(s.cfg.ResultRetention.Seconds())
	header[argAuditMax], header[argTrimMin] = "0", ""
	if s.cfg.Audit {
		header[argAuditMax] = itoa(s.cfg.AuditMax)
	}
	if min, ok := afterID(b.Acked); ok {
		header[argTrimMin] = min
	}
	header[argFinished], header[argSweep] = log, "1"
	if b.NoSweep {
		header[argSweep] = "0"
	}
	return c.layout(k, header)
}

// emitCounts is how many jobs each parent emitted, by parent id: what its
// record keeps, so the status of an emitted job not relayed yet is known.
func emitCounts(emits []Job) map[string]int {
	if len(emits) == 0 {
		return nil
	}
	n := make(map[string]int, len(emits))
	for _, e := range emits {
		if parent, i, ok := ParentID(e.ID); ok {
			n[parent] = max(n[parent], i+1)
		}
	}
	return n
}

// afterID is the stream id right after the last of ids, if ids are in
// increasing stream order.
func afterID(ids []string) (string, bool) {
	if len(ids) == 0 {
		return "", false
	}
	var prevMs, prevSeq uint64
	for i, id := range ids {
		msS, seqS, ok := strings.Cut(id, "-")
		ms, err1 := strconv.ParseUint(msS, 10, 64)
		seq, err2 := strconv.ParseUint(seqS, 10, 64)
		if !ok || err1 != nil || err2 != nil || seq == ^uint64(0) {
			return "", false
		}
		if i > 0 && (ms < prevMs || ms == prevMs && seq <= prevSeq) {
			return "", false
		}
		prevMs, prevSeq = ms, seq
	}
	return strconv.FormatUint(prevMs, 10) + "-" + strconv.FormatUint(prevSeq+1, 10), true
}

// registerTypes records the entity types of writes this process has not
// recorded yet (see keys.EntityTypes), before the commit that writes them:
// a split then finds every state through its type's index.
func (s *Store) registerTypes(ctx context.Context, writes []StateWrite) error {
	for i := range writes {
		typ := writes[i].Entity.Type
		if _, ok := s.types.Load(typ); ok {
			continue
		}
		if err := s.registerEntityType(ctx, typ); err != nil {
			return err
		}
		s.types.Store(typ, true)
	}
	return nil
}
