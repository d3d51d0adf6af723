package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// JobState is where a job is in its life, as Redis tells it. A job in a
// batch in flight is still queued (or retrying) here: only its owner
// knows it runs.
type JobState int

// The states of a job.
const (
	StateUnknown   JobState = iota // no such job, or its record expired
	StateQueued                    // in the queue, or waiting behind its key's held job, or for its handler
	StateDelayed                   // held until its not-before time
	StateRetrying                  // an attempt failed; it waits for the next, holding its key
	StateDone                      // finished: applied
	StateDead                      // finished: dead-lettered
	StateRejected                  // finished: its handler refused it
	StateCancelled                 // finished: cancelled before it ran
)

var stateNames = [...]string{"unknown", "queued", "delayed", "retrying", "done", "dead", "rejected", "cancelled"}

func (s JobState) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
	return stateNames[s]
}

// Finished says whether a job in state s is over.
func (s JobState) Finished() bool { return s >= StateDone }

// JobInfo is what Redis knows of one job.
type JobInfo struct {
	ID           string
	State        JobState
	Handler, Key string
	Partition    int   // -1 when not known
	Attempts     int   // attempts made
	NextRun      int64 // delayed, retrying: when it runs next, unix ms
	Errors       []string
	Error        string // the last error; a rejected job's reason
	Result       []byte
	Payload      []byte // when its body is at hand: delayed, parked, waiting, dead
	SubmittedAt  int64  // unix ms
	FinishedAt   int64  // unix ms
	Note         string // more about the state
	// CancelRequested: a cancel was asked and the owner has not applied it.
	CancelRequested bool
}

// fromRecord fills in what a job's record says, unpacking rec (see
// unpackRecord) on the way. inLog says the record leaves its job's handler,
// key and submission time to its entry in the finished log (see
// finished_log.go): a finished record without "n", with a finish time to
// find the entry at.
func (j *JobInfo) fromRecord(rec map[string]string) (inLog bool) {
	unpackRecord(rec)
	_, kept := rec["n"]
	inLog = !kept && rec["s"] != "" && rec["f"] != ""
	j.Handler, j.Key = rec["n"], rec["k"]
	j.SubmittedAt, _ = strconv.ParseInt(rec["t"], 10, 64)
	j.FinishedAt, _ = strconv.ParseInt(rec["f"], 10, 64)
	switch rec["s"] {
	case statusDone:
		j.State = StateDone
	case statusDead:
		j.State = StateDead
	case statusRejected:
		j.State, j.Error = StateRejected, rec["m"]
	case statusCancelled:
		j.State, j.Error = StateCancelled, rec["m"]
	default:
		j.State = StateQueued
		return
	}
	a, err := strconv.Atoi(rec["a"])
	if err != nil {
		a = 1 // the commit records attempts only when not 1
	}
	j.Attempts = a
	if r, ok := rec["r"]; ok {
		j.Result = []byte(r)
	}
	return inLog
}

// fromBody fills in what a job's body says: what a queued, parked or
// waiting job carries.
func (j *JobInfo) fromBody(b Job) {
	j.Handler, j.Key, j.Payload = b.Handler, b.Key, b.Payload
	j.Attempts, j.Errors = max(b.Attempt-1, 0), b.Errors
	if len(b.Errors) > 0 {
		j.Error = b.Errors[len(b.Errors)-1]
	}
	if j.SubmittedAt == 0 {
		j.SubmittedAt = b.SubmittedAt
	}
}

// fromDead fills in a dead letter.
func (j *JobInfo) fromDead(r DeadRecord) {
	j.Handler, j.Key, j.Payload, j.Attempts, j.Errors = r.Handler, r.Key, r.Payload, r.Attempts, r.Errors
	if len(r.Errors) > 0 {
		j.Error = r.Errors[len(r.Errors)-1]
	}
	if j.FinishedAt == 0 {
		j.FinishedAt = r.DeadAtMs
	}
}

// parkedState is the state of a job that holds its key: retrying once
// an attempt of it failed, else queued (due now, or waiting for a worker
// that serves its handler).
func (j *JobInfo) parkedState(b Job, notBefore int64) {
	j.fromBody(b)
	switch {
	case b.WaitingSince > 0:
		j.State, j.NextRun = StateQueued, notBefore
		j.Note = "waits for a worker that serves its handler (since " + msTime(b.WaitingSince) + "); holds its key"
		if b.Attempt > 1 {
			j.State = StateRetrying
		}
	case b.Attempt > 1:
		j.State, j.NextRun = StateRetrying, notBefore
		j.Note = fmt.Sprintf("attempt %d failed; holds its key until attempt %d", b.Attempt-1, b.Attempt)
	default:
		j.State = StateQueued
		j.Note = "next of its key; holds it"
	}
}

// Describe reads what Redis knows of jobs by id, in order: each id's
// record is looked for in every partition (an id does not name its key),
// then its place in its partition, in three round trips in all (and one
// more to the finished log for a finished job's handler, key and
// submission time, see record.go).
func (s *Store) Describe(ctx context.Context, ids []string) ([]JobInfo, error) {
	P := s.partitionCount()
	pipe := s.rdb.Pipeline()
	recs := make([]*redis.MapStringStringCmd, len(ids)*P)
	// An emitted job has no record until it finishes; while it holds or
	// waits behind its key it has a body.
	emitted := map[int][]*redis.StringCmd{}
	for i, id := range ids {
		for p := 0; p < P; p++ {
			recs[i*P+p] = pipe.HGetAll(ctx, keys.For(p).Job(id))
		}
		if _, _, ok := ParentID(id); ok {
			cmds := make([]*redis.StringCmd, P)
			for p := range cmds {
				cmds[p] = pipe.HGet(ctx, keys.For(p).Bodies(), id)
			}
			emitted[i] = cmds
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read job records: %w", err)
	}
	out := make([]JobInfo, len(ids))
	var sts []JobStatus // emitted jobs not found: does a parent say it is queued?
	var stIdx []int
	var logged []int // finished, their handlers and keys in the finished log
	for i, id := range ids {
		j := JobInfo{ID: id, Partition: -1}
		for p := 0; p < P; p++ {
			if rec := recs[i*P+p].Val(); len(rec) > 0 {
				j.Partition = p
				if j.fromRecord(rec) {
					logged = append(logged, i)
				}
				break
			}
		}
		if j.Partition < 0 {
			for p, c := range emitted[i] {
				if c.Err() == nil {
					j.Partition, j.State = p, StateQueued
					break
				}
			}
		}
		if j.Partition < 0 && emitted[i] != nil {
			sts, stIdx = append(sts, JobStatus{ID: id}), append(stIdx, i)
		}
		out[i] = j
	}
	if len(sts) > 0 {
		if err := s.emittedStatuses(ctx, sts); err != nil {
			return nil, err
		}
		for n, st := range sts {
			if st.Known {
				parent, _, _ := ParentID(st.ID)
				out[stIdx[n]].State = StateQueued
				out[stIdx[n]].Note = "emitted by " + parent + "; on its way to its key's partition, or in its queue"
			}
		}
	}
	if err := s.fromLog(ctx, out, logged); err != nil {
		return nil, err
	}
	return out, s.place(ctx, out)
}

// place finds, in one pipeline, where each job of out with a partition
// is: delayed, parked, waiting or in the queue, with its body and whether
// a cancel waits for it; and reads the dead letters of dead ones.
func (s *Store) place(ctx context.Context, out []JobInfo) error {
	type look struct {
		i               int
		delayed, parked *redis.FloatCmd
		cancel          *redis.FloatCmd
		body, dead      *redis.StringCmd
	}
	var looks []*look
	var queued []int // in their queues
	pipe := s.rdb.Pipeline()
	for i := range out {
		j := &out[i]
		if j.Partition < 0 || j.State == StateDone || j.State == StateRejected || j.State == StateCancelled {
			continue
		}
		k := keys.For(j.Partition)
		l := &look{i: i}
		if j.State == StateDead {
			l.dead = pipe.HGet(ctx, k.Dead(), j.ID)
		} else {
			l.delayed = pipe.ZScore(ctx, k.Delayed(), j.ID)
			l.parked = pipe.ZScore(ctx, k.Parked(), j.ID)
			l.cancel = pipe.ZScore(ctx, k.Cancels(), j.ID)
			l.body = pipe.HGet(ctx, k.Bodies(), j.ID)
		}
		looks = append(looks, l)
	}
	if len(looks) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: find jobs in their partitions: %w", err)
	}
	for _, l := range looks {
		j := &out[l.i]
		if l.dead != nil {
			var r DeadRecord
			if err := json.Unmarshal([]byte(l.dead.Val()), &r); err == nil {
				j.fromDead(r)
			}
			continue
		}
		j.CancelRequested = l.cancel.Err() == nil
		body, hasBody := l.body.Val(), l.body.Err() == nil
		switch {
		case l.delayed.Err() == nil && hasBody:
			cr := j.CancelRequested
			*j = delayedInfo(j.Partition, j.ID, body, int64(l.delayed.Val()))
			j.CancelRequested = cr
		case hasBody:
			b, err := decodeJob(j.Partition, body)
			if err != nil {
				continue
			}
			if l.parked.Err() == nil {
				j.parkedState(b, int64(l.parked.Val()))
				continue
			}
			j.fromBody(b)
			j.Note = "waits behind its key's held job"
			if head, err := s.rdb.HGet(ctx, keys.For(j.Partition).Holds(), j.Key).Result(); err == nil {
				j.Note = "waits behind job " + head + " of its key"
			}
		case j.Note == "":
			j.Note = "in its partition's queue"
			queued = append(queued, l.i)
		}
	}
	return s.findQueued(ctx, out, queued)
}

// queueScan bounds how far Describe reads a partition's queue for a job.
const queueScan = 100_000

// findQueued reads the jobs of out at queued, which are in their
// partitions' queues, from the queues: a stream entry is found only by
// reading from the head, up to queueScan entries.
func (s *Store) findQueued(ctx context.Context, out []JobInfo, queued []int) error {
	byPart := map[int]map[string]int{}
	for _, i := range queued {
		p := out[i].Partition
		if byPart[p] == nil {
			byPart[p] = map[string]int{}
		}
		byPart[p][out[i].ID] = i
	}
	for p, want := range byPart {
		from, whole := "-", false
		for read := 0; read < queueScan && len(want) > 0 && !whole; {
			msgs, err := s.rdb.XRangeN(ctx, keys.For(p).Queue(), from, "+", listChunk).Result()
			if err != nil {
				return fmt.Errorf("store: read the queue of partition %d: %w", p, err)
			}
			for _, m := range msgs {
				b := jobFromStream(p, m.ID, m.Values)
				if i, ok := want[b.ID]; ok {
					out[i].fromBody(b)
					delete(want, b.ID)
				}
			}
			whole = len(msgs) < listChunk
			if !whole {
				read += len(msgs)
				from = "(" + msgs[len(msgs)-1].ID
			}
		}
		for _, i := range want {
			out[i].Note = fmt.Sprintf("in its partition's queue, past its first %d entries", queueScan)
			if whole {
				out[i].Note = "left its partition's queue while it was looked for: in a batch now, or finished"
			}
		}
	}
	return nil
}

// ListQuery says which jobs ListJobs lists.
type ListQuery struct {
	State     JobState // StateQueued .. StateCancelled
	Handler   string   // "": any
	Key       string   // "": any; else only its partition is read
	Partition int      // -1: every partition
	Limit     int
	After     string // a cursor ListJobs returned; "" from the start
}

// ErrBadCursor means a listing's cursor is not one ListJobs made.
var ErrBadCursor = errors.New("bad job listing cursor")

// listCursor is where a listing stopped: a partition and the place of the
// last entry looked at in it, opaque to the caller.
type listCursor struct {
	P   int
	Pos string // "" is the partition's start
}

func (c listCursor) String() string { return strconv.Itoa(c.P) + "," + c.Pos }

func parseCursor(s string) (listCursor, error) {
	if s == "" {
		return listCursor{}, nil
	}
	p, pos, ok := strings.Cut(s, ",")
	n, err := strconv.Atoi(p)
	if !ok || err != nil || n < 0 {
		return listCursor{}, fmt.Errorf("%w %q", ErrBadCursor, s)
	}
	return listCursor{P: n, Pos: pos}, nil
}

func badPos(pos string) error { return fmt.Errorf("%w: position %q", ErrBadCursor, pos) }

// listScan bounds the entries one page looks at, so a filter that matches
// few jobs of a long queue returns a short page with a cursor instead of
// holding the caller for long.
func listScan(limit int) int { return max(20*limit, 5000) }

// listChunk is how many entries one read of a partition takes.
const listChunk = 500

// listed is what listing one partition's share of a page found.
type listed struct {
	jobs    []JobInfo
	at      string // the place of the last entry looked at
	more    bool   // entries are left after at
	scanned int
}

// ListJobs pages through the jobs in state q.State, partition by
// partition: in each, queued jobs in queue order and then those holding
// or waiting behind a key (keys in byte order), retrying ones by key,
// delayed ones by due time, dead ones by the time they died, done,
// rejected and cancelled ones in the order they finished, while their
// records are kept (the dedup window, longer with a result). The cursor
// is a partition and a place in it: a listing sees each job that stays
// where it is once. next is "" at the end; a page may be short, even
// empty, with a next when a filter passed over many entries.
func (s *Store) ListJobs(ctx context.Context, q ListQuery) (jobs []JobInfo, next string, err error) {
	if q.State <= StateUnknown || q.State > StateCancelled {
		return nil, "", fmt.Errorf("store: list jobs: no such state %v", q.State)
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	cur, err := parseCursor(q.After)
	if err != nil {
		return nil, "", err
	}
	var parts []int
	switch {
	case q.Key != "":
		routes := s.routes()
		p := routes.PartitionOf(q.Key)
		// A key moved by a reshard has its older jobs in its old partition.
		if pp := routes.Parent(q.Key, p, time.Now().UnixMilli()); pp >= 0 && (q.Partition < 0 || q.Partition == pp) {
			parts = append(parts, pp)
		}
		if q.Partition < 0 || q.Partition == p {
			parts = append(parts, p)
		}
		if len(parts) == 0 {
			return nil, "", nil
		}
	case q.Partition >= 0:
		if q.Partition >= s.partitionCount() {
			return nil, "", fmt.Errorf("store: list jobs: no partition %d (there are %d)", q.Partition, s.partitionCount())
		}
		parts = []int{q.Partition}
	default:
		for p := 0; p < s.partitionCount(); p++ {
			parts = append(parts, p)
		}
	}
	for len(parts) > 0 && parts[0] < cur.P {
		parts = parts[1:]
	}
	sizes, err := s.listSizes(ctx, q.State, parts)
	if err != nil {
		return nil, "", err
	}
	budget := listScan(q.Limit)
	for i, p := range parts {
		if sizes[p] == 0 {
			continue
		}
		pos := ""
		if p == cur.P {
			pos = cur.Pos
		}
		l, err := s.listPartition(ctx, p, q, pos, q.Limit-len(jobs), budget)
		if err != nil {
			return nil, "", err
		}
		jobs, budget = append(jobs, l.jobs...), budget-l.scanned
		if l.more {
			return jobs, listCursor{P: p, Pos: l.at}.String(), nil
		}
		if len(jobs) >= q.Limit || budget <= 0 {
			for _, r := range parts[i+1:] {
				if sizes[r] > 0 {
					return jobs, listCursor{P: r}.String(), nil
				}
			}
			return jobs, "", nil
		}
	}
	return jobs, "", nil
}

// listSizes is, per partition, how many entries the listing of state
// reads there (0: nothing to read), in one round trip.
func (s *Store) listSizes(ctx context.Context, state JobState, parts []int) (map[int]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([][]*redis.IntCmd, len(parts))
	for i, p := range parts {
		k := keys.For(p)
		switch state {
		case StateQueued:
			cmds[i] = []*redis.IntCmd{pipe.XLen(ctx, k.Queue()), pipe.HLen(ctx, k.Holds())}
		case StateRetrying:
			cmds[i] = []*redis.IntCmd{pipe.HLen(ctx, k.Holds())}
		case StateDelayed:
			cmds[i] = []*redis.IntCmd{pipe.ZCard(ctx, k.Delayed())}
		case StateDead:
			cmds[i] = []*redis.IntCmd{pipe.ZCard(ctx, k.DeadIndex())}
		default:
			cmds[i] = []*redis.IntCmd{pipe.XLen(ctx, k.Finished())}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	out := make(map[int]int64, len(parts))
	for i, p := range parts {
		for _, c := range cmds[i] {
			out[p] += c.Val()
		}
	}
	return out, nil
}

// listPartition lists up to want jobs of partition p after pos, looking
// at no more than budget entries.
func (s *Store) listPartition(ctx context.Context, p int, q ListQuery, pos string, want, budget int) (listed, error) {
	match := func(j *JobInfo) bool {
		return j.State == q.State && (q.Handler == "" || j.Handler == q.Handler) && (q.Key == "" || j.Key == q.Key)
	}
	switch q.State {
	case StateQueued:
		// The queue ("q" positions), then the held keys' lines ("h").
		var l listed
		if pos == "" || strings.HasPrefix(pos, "q") {
			var err error
			if l, err = s.listQueue(ctx, p, strings.TrimPrefix(pos, "q"), want, budget, match); err != nil || l.more {
				l.at = "q" + l.at
				return l, err
			}
			if len(l.jobs) >= want || l.scanned >= budget {
				// The queue is through; the lines start the next page.
				return listed{jobs: l.jobs, at: "h", more: true, scanned: l.scanned}, nil
			}
			pos = "h"
		}
		h, err := s.listHeld(ctx, p, q, strings.TrimPrefix(pos, "h"), want-len(l.jobs), budget-l.scanned, match)
		h.jobs, h.at, h.scanned = append(l.jobs, h.jobs...), "h"+h.at, h.scanned+l.scanned
		return h, err
	case StateRetrying:
		return s.listHeld(ctx, p, q, pos, want, budget, match)
	case StateDelayed:
		return s.listScored(ctx, p, keys.For(p).Delayed(), pos, want, budget, match, s.delayedInfos)
	case StateDead:
		return s.listScored(ctx, p, keys.For(p).DeadIndex(), pos, want, budget, match, s.deadInfos)
	default:
		return s.listFinished(ctx, p, pos, want, budget, match)
	}
}

// listQueue lists the jobs of p's queue after stream id pos.
func (s *Store) listQueue(ctx context.Context, p int, pos string, want, budget int, match func(*JobInfo) bool) (l listed, err error) {
	from := "-"
	if pos != "" {
		from = "(" + pos
	}
	for {
		n := min(listChunk, budget-l.scanned)
		msgs, err := s.rdb.XRangeN(ctx, keys.For(p).Queue(), from, "+", int64(n+1)).Result()
		if err != nil {
			return l, fmt.Errorf("store: list the queue of partition %d: %w", p, err)
		}
		take := min(len(msgs), n)
		for i, m := range msgs[:take] {
			l.scanned++
			b := jobFromStream(p, m.ID, m.Values)
			j := JobInfo{ID: b.ID, State: StateQueued, Partition: p, Note: "in its partition's queue"}
			j.fromBody(b)
			if match(&j) {
				l.jobs = append(l.jobs, j)
			}
			if len(l.jobs) >= want || l.scanned >= budget {
				l.at, l.more = m.ID, i+1 < len(msgs)
				return l, nil
			}
		}
		if len(msgs) <= n {
			return l, nil
		}
		from = "(" + msgs[take-1].ID
	}
}

// listHeld lists the jobs of p's held keys, keys in byte order: each
// key's parked job (retrying, or queued) and, when listing queued jobs,
// the jobs waiting behind it. A position is "<key in hex>:<place in its
// line>", 0 being the parked job.
func (s *Store) listHeld(ctx context.Context, p int, q ListQuery, pos string, want, budget int, match func(*JobInfo) bool) (l listed, err error) {
	k := keys.For(p)
	var fromKey string
	fromIdx := -1
	if pos != "" {
		hexKey, idx, ok := strings.Cut(pos, ":")
		raw, herr := hex.DecodeString(hexKey)
		n, nerr := strconv.Atoi(idx)
		if !ok || herr != nil || nerr != nil {
			return l, badPos(pos)
		}
		fromKey, fromIdx = string(raw), n
	}
	holds, err := s.rdb.HGetAll(ctx, k.Holds()).Result()
	if err != nil {
		return l, fmt.Errorf("store: list the held keys of partition %d: %w", p, err)
	}
	held := make([]string, 0, len(holds))
	for key := range holds {
		if (q.Key == "" || key == q.Key) && (fromIdx < 0 || key >= fromKey) {
			held = append(held, key)
		}
	}
	slices.Sort(held)
	for ki, key := range held {
		start := 0
		if fromIdx >= 0 && key == fromKey {
			start = fromIdx + 1
		}
		head := holds[key]
		var line []string
		if start == 0 {
			line = []string{head}
		}
		if q.State == StateQueued {
			rest, err := s.rdb.LRange(ctx, k.Waiting(key), int64(max(start-1, 0)), -1).Result()
			if err != nil {
				return l, fmt.Errorf("store: list the jobs waiting on a key of partition %d: %w", p, err)
			}
			line = append(line, rest...)
		}
		if len(line) == 0 {
			continue
		}
		infos, err := s.heldInfos(ctx, p, head, line)
		if err != nil {
			return l, err
		}
		for n := range infos {
			l.scanned++
			if j := &infos[n]; j.ID != "" && match(j) {
				l.jobs = append(l.jobs, *j)
			}
			if len(l.jobs) >= want || l.scanned >= budget {
				l.at = hex.EncodeToString([]byte(key)) + ":" + strconv.Itoa(start+n)
				l.more = n+1 < len(infos) || ki+1 < len(held)
				return l, nil
			}
		}
	}
	return l, nil
}

// heldInfos reads one key's line, ids in order; head is its parked job.
// A job that finished meanwhile is left blank, in its place.
func (s *Store) heldInfos(ctx context.Context, p int, head string, ids []string) ([]JobInfo, error) {
	k := keys.For(p)
	pipe := s.rdb.Pipeline()
	bodies := pipe.HMGet(ctx, k.Bodies(), ids...)
	due := pipe.ZScore(ctx, k.Parked(), head)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read held jobs of partition %d: %w", p, err)
	}
	out := make([]JobInfo, len(ids))
	for i, v := range bodies.Val() {
		str, ok := v.(string)
		if !ok {
			continue
		}
		b, err := decodeJob(p, str)
		if err != nil {
			continue
		}
		j := JobInfo{ID: ids[i], Partition: p}
		if ids[i] == head {
			j.parkedState(b, int64(due.Val()))
		} else {
			j.fromBody(b)
			j.State, j.Note = StateQueued, "waits behind job "+head+" of its key"
		}
		out[i] = j
	}
	return out, nil
}

// listScored lists the members of a sorted set of p in score order (due
// time, death time) after pos, "<score>:<member>", reading their jobs
// with infos.
func (s *Store) listScored(ctx context.Context, p int, set, pos string, want, budget int, match func(*JobInfo) bool,
	infos func(ctx context.Context, p int, zs []redis.Z) ([]JobInfo, error)) (l listed, err error) {
	var fromScore int64
	var fromID string
	if pos != "" {
		sc, id, ok := strings.Cut(pos, ":")
		n, err := strconv.ParseInt(sc, 10, 64)
		if !ok || err != nil {
			return l, badPos(pos)
		}
		fromScore, fromID = n, id
	}
	for {
		start := int64(0)
		if pos != "" {
			if start, err = s.rankAfter(ctx, set, fromScore, fromID); err != nil {
				return l, err
			}
		}
		n := min(listChunk, budget-l.scanned)
		zs, err := s.rdb.ZRangeWithScores(ctx, set, start, start+int64(n)).Result()
		if err != nil {
			return l, fmt.Errorf("store: list %s: %w", set, err)
		}
		take := min(len(zs), n)
		got, err := infos(ctx, p, zs[:take])
		if err != nil {
			return l, err
		}
		byID := make(map[string]*JobInfo, len(got))
		for i := range got {
			byID[got[i].ID] = &got[i]
		}
		for i, z := range zs[:take] {
			l.scanned++
			id, _ := z.Member.(string)
			if j := byID[id]; j != nil && match(j) {
				l.jobs = append(l.jobs, *j)
			}
			fromScore, fromID, pos = int64(z.Score), id, "set"
			if len(l.jobs) >= want || l.scanned >= budget {
				l.at, l.more = strconv.FormatInt(fromScore, 10)+":"+fromID, i+1 < len(zs)
				return l, nil
			}
		}
		if len(zs) <= n {
			return l, nil
		}
	}
}

// rankAfter is the rank in set of the first member after (score, id):
// right after id if it is still there with that score, else after every
// member of a lower score or of that score and an id not after it.
func (s *Store) rankAfter(ctx context.Context, set string, score int64, id string) (int64, error) {
	pipe := s.rdb.Pipeline()
	rank := pipe.ZRank(ctx, set, id)
	sc := pipe.ZScore(ctx, set, id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("store: list %s: %w", set, err)
	}
	if rank.Err() == nil && sc.Err() == nil && int64(sc.Val()) == score {
		return rank.Val() + 1, nil
	}
	// The member left: count what sorts before its place. Redis orders a
	// score's members by their bytes.
	pipe = s.rdb.Pipeline()
	below := pipe.ZCount(ctx, set, "-inf", "("+strconv.FormatInt(score, 10))
	ties := pipe.ZRangeByScore(ctx, set, &redis.ZRangeBy{Min: strconv.FormatInt(score, 10), Max: strconv.FormatInt(score, 10)})
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("store: list %s: %w", set, err)
	}
	n := below.Val()
	for _, m := range ties.Val() {
		if m <= id {
			n++
		}
	}
	return n, nil
}

// delayedInfos reads delayed jobs: their bodies, and when they were
// submitted from their records.
func (s *Store) delayedInfos(ctx context.Context, p int, zs []redis.Z) ([]JobInfo, error) {
	if len(zs) == 0 {
		return nil, nil
	}
	k := keys.For(p)
	ids := members(zs)
	bodies, err := s.rdb.HMGet(ctx, k.Bodies(), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read delayed jobs of partition %d: %w", p, err)
	}
	out := make([]JobInfo, 0, len(ids))
	for i, v := range bodies {
		str, ok := v.(string)
		if !ok {
			continue // moved to the queue meanwhile
		}
		out = append(out, delayedInfo(p, ids[i], str, int64(zs[i].Score)))
	}
	return out, nil
}

// delayedInfo reads a delayed job's body. It counts as submitted when it
// falls due (its body says so), so its submission time is not known.
func delayedInfo(p int, id, body string, due int64) JobInfo {
	j := JobInfo{ID: id, Partition: p}
	var b Job
	if err := unpackJob([]byte(body), &b); err == nil {
		j.fromBody(b)
	}
	j.State, j.NextRun, j.SubmittedAt = StateDelayed, due, 0
	return j
}

// deadInfos reads dead letters and their records.
func (s *Store) deadInfos(ctx context.Context, p int, zs []redis.Z) ([]JobInfo, error) {
	if len(zs) == 0 {
		return nil, nil
	}
	k := keys.For(p)
	ids := members(zs)
	pipe := s.rdb.Pipeline()
	dead := pipe.HMGet(ctx, k.Dead(), ids...)
	recs := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		recs[i] = pipe.HGetAll(ctx, k.Job(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read dead letters of partition %d: %w", p, err)
	}
	out := make([]JobInfo, 0, len(ids))
	var logged []int // their submission times in the finished log
	for i, v := range dead.Val() {
		str, ok := v.(string)
		if !ok {
			continue // replayed or purged meanwhile
		}
		var r DeadRecord
		if err := json.Unmarshal([]byte(str), &r); err != nil {
			continue
		}
		j := JobInfo{ID: ids[i], Partition: p}
		if j.fromRecord(recs[i].Val()) {
			logged = append(logged, len(out))
		}
		j.State = StateDead
		j.fromDead(r)
		out = append(out, j)
	}
	return out, s.fromLog(ctx, out, logged)
}

func members(zs []redis.Z) []string {
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i], _ = z.Member.(string)
	}
	return ids
}

// listFinished lists done, rejected or cancelled jobs from p's finished
// log, after pos "<entry id>/<how many of its jobs were looked at>".
func (s *Store) listFinished(ctx context.Context, p int, pos string, want, budget int, match func(*JobInfo) bool) (l listed, err error) {
	from, skip := "-", 0
	if pos != "" {
		id, n, ok := strings.Cut(pos, "/")
		var err error
		if skip, err = strconv.Atoi(n); !ok || err != nil || skip < 0 {
			return l, badPos(pos)
		}
		from = id // read again: its jobs after the skipped ones
	}
	k := keys.For(p)
	for {
		// An entry holds a batch's jobs, so few entries make a chunk.
		n := max(min(listChunk, budget-l.scanned)/64, 1)
		msgs, err := s.rdb.XRangeN(ctx, k.Finished(), from, "+", int64(n+1)).Result()
		if err != nil {
			return l, fmt.Errorf("store: list the finished jobs of partition %d: %w", p, err)
		}
		take := min(len(msgs), n)
		for mi, m := range msgs[:take] {
			all := loggedJobs(m.Values)
			start := 0
			if m.ID == from {
				start = min(skip, len(all))
			}
			infos, err := s.finishedInfos(ctx, p, all[start:])
			if err != nil {
				return l, err
			}
			for i := range infos {
				l.scanned++
				if infos[i].ID != "" && match(&infos[i]) {
					l.jobs = append(l.jobs, infos[i])
				}
				if len(l.jobs) >= want || l.scanned >= budget {
					l.at = m.ID + "/" + strconv.Itoa(start+i+1)
					l.more = start+i+1 < len(all) || mi+1 < len(msgs)
					return l, nil
				}
			}
		}
		if len(msgs) <= n {
			return l, nil
		}
		from, skip = "("+msgs[take-1].ID, 0
	}
}

// finishedInfos reads the records of finished jobs, each logged with how
// it ended (a record status) and, in a "g" entry, its handler, key and
// submission time. An expired record is left blank, in its place, and so
// is one whose status is no longer the logged one: that entry is a past
// end (a dead letter replayed since), listed by the entry of the job's
// later end, if any.
func (s *Store) finishedInfos(ctx context.Context, p int, jobs []loggedJob) ([]JobInfo, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	k := keys.For(p)
	pipe := s.rdb.Pipeline()
	recs := make([]*redis.MapStringStringCmd, len(jobs))
	for i := range jobs {
		recs[i] = pipe.HGetAll(ctx, k.Job(jobs[i].ID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read finished jobs of partition %d: %w", p, err)
	}
	out := make([]JobInfo, len(jobs))
	var logged []int // records that leave their meta to an entry other than this one
	for i, l := range jobs {
		rec := recs[i].Val()
		if len(rec) == 0 || recordStatus(rec["s"]) != l.End {
			continue
		}
		out[i] = JobInfo{ID: l.ID, Partition: p}
		if out[i].fromRecord(rec) {
			if l.Meta {
				out[i].Handler, out[i].Key, out[i].SubmittedAt = l.Handler, l.Key, l.SubmittedAt
			} else {
				logged = append(logged, i)
			}
		}
	}
	return out, s.fromLog(ctx, out, logged)
}

// msTime writes unix ms as an RFC 3339 time, UTC.
func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }
