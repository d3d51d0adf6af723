package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/jsonscan"
	"github.com/corralhq/corral/internal/tracing"
	"go.opentelemetry.io/otel/trace"
)

// submitBatch is how many jobs go in one Submit call from a file. A call
// carries the jobs of few partitions (see submitLanes), so the worker
// enqueues each partition's share in one large Redis script call.
const submitBatch = 512

// submitBatchBytes bounds one Submit call's payloads, well inside the
// gRPC message limit even when payloads are large.
const submitBatchBytes = 4 << 20

// submitLanes is how many Submit calls from a file are in flight at once.
// A lane carries the jobs of a fixed set of partitions (partition mod
// lanes): all jobs of a key go through one lane, in file order, so per-key
// order holds while the lanes overlap. Many lanes, because Redis serves
// its clients in turns, a read per connection: while the workers drain the
// same Redis, the ingest gets a share in proportion to its connections.
// 64 lanes of 512 jobs ingested about three times faster than 4 lanes of
// 2,048 on a 2-core machine draining as it ingests, and as fast when not.
const submitLanes = 64

// submitLag is how many lines a lane may hold unsent: a lane of rare
// partitions is sent once the file has moved this far past its first
// line, so its lines' reports are not held back until the end.
const submitLag = submitLanes * submitBatch

// submitLane is one lane's batch: jobs and their line numbers.
type submitLane struct {
	jobs  []*workerpb.Job
	lines []int
	bytes int
}

// fileJob is one line of a submit file.
type fileJob struct {
	ID      string          `json:"id"`
	Handler string          `json:"handler"`
	Key     string          `json:"key"`
	Payload json.RawMessage `json:"payload"`
}

// tracedSubmit runs a submit under a corral.submit span, when the
// environment asks for traces (see internal/tracing), so the jobs' spans
// on the workers join its trace; the span is flushed before it returns.
func tracedSubmit(ctx context.Context, run func(context.Context) error) error {
	tr, err := tracing.FromEnv(ctx, "corral-coordinator")
	if err != nil || tr == nil {
		if err != nil {
			return err
		}
		return run(ctx)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tr.Shutdown(sctx) // best effort: a collector that is down does not fail the submit
	}()
	sctx, span := tr.Start(ctx, tracing.SpanSubmit)
	err = run(sctx)
	tracing.Fail(span, err)
	span.End()
	return err
}

func submitCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	handler := fs.String("handler", "", "handler name, e.g. donor.donate")
	key := fs.String("key", "", "entity key; decides the partition")
	payload := fs.String("payload", "", "JSON payload")
	id := fs.String("id", "", "job id, the idempotency key (generated when empty)")
	file := fs.String("file", "", `JSON lines file of {"id","handler","key","payload"} (- for stdin)`)
	onError := fs.String("on-error", "skip", "with --file: on a bad line or rejected job, skip (report and go on) or stop")
	quiet := fs.Bool("quiet", false, "with --file: print only the summary")
	out := outputFlag(fs, outputTable)
	in := fs.Duration("in", 0, "delay: run the job this long from now (e.g. 30s)")
	at := fs.String("at", "", "delay: run the job at this time (RFC 3339)")
	wait := fs.Bool("wait", false, "wait for the job to finish and print its result (a rejection's reason, or a dead letter's error, exits non-zero)")
	waitTimeout := fs.Duration("timeout", 30*time.Second, "with --wait: how long to wait for the result")
	maxAttempts := fs.Int("max-attempts", 0, "attempts before dead-lettering (0: the handler's)")
	jobTimeout := fs.Duration("job-timeout", 0, "deadline of one attempt, at most the handler's (0: the handler's)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: coordinator submit --handler H --key K --payload JSON [--id ID] [--in D | --at T] [--wait [--timeout D]] [-o table|json]
       coordinator submit --file F.jsonl [--on-error skip|stop]

The id is the job's idempotency key: a job sent again with the same id and
content is reported as a duplicate and not applied twice. A job without an
id gets one here, before it is first sent, so that when a worker does not
answer in time and the job goes to another, it is still one job.

A job is refused, and nothing written, when its handler is unknown,
internal (only other handlers may emit to it) or not served by the worker
that owns its key, its key is empty, or its payload is not JSON or does
not have the shape its handler declares.

With --file, a line without an id gets one derived from its line number and
its content, the same each time the same file (or the same lines on stdin)
is sent: sending a file again after a failure adds nothing twice, and two
identical lines are still two jobs. (The same line at the same line number
of another file is taken for the same job, for as long as finished ids are
remembered; give ids when that can happen.) Only bad input is rejected.
While no worker can take a call (workers down, Redis restarting), the call
is sent again with the same ids for up to --retry-for (a global flag); if it
still cannot be delivered, its lines and every later line of the same keys
are not sent, and the command says how many lines were not sent and where
the first of them is: send the same file again to finish.

When a partition's queue is full (worker --max-queue-depth), the worker
refuses with ResourceExhausted and the call backs off and is sent again,
with the same ids, for up to --full-wait (a global flag, default 10m): a
bulk load into a slow cluster slows down instead of filling Redis. Without
--quiet, progress goes to stderr: a bar with the rate and the time left on
a terminal, else a line every 2s; both say when a full queue holds the
submission back.

Flags:
`)
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if *onError != "skip" && *onError != "stop" {
		return fmt.Errorf("--on-error must be skip or stop, got %q", *onError)
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if *file != "" {
		if *handler != "" || *key != "" || *payload != "" || *id != "" {
			return errors.New("give either --file or --handler/--key/--payload, not both")
		}
		if out.json() {
			return errors.New("-o json prints one job's submission; --file prints progress and a summary for people")
		}
		return submitFile(ctx, c, *file, *onError == "stop", *quiet, stdin, stdout, stderr)
	}
	if *in < 0 {
		return fmt.Errorf("--in must not be negative, got %v", *in)
	}
	if *in > 0 && *at != "" {
		return errors.New("give either --in or --at, not both")
	}
	var notBefore int64
	if *in > 0 {
		notBefore = time.Now().Add(*in).UnixMilli()
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("--at %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", *at)
		}
		notBefore = t.UnixMilli()
	}
	if *maxAttempts < 0 || *jobTimeout < 0 {
		return errors.New("--max-attempts and --job-timeout must not be negative")
	}
	keySet := false // an empty --key "" goes to the worker, which says why it is refused
	fs.Visit(func(f *flag.Flag) { keySet = keySet || f.Name == "key" })
	if *handler == "" || !keySet || *payload == "" {
		return errors.New("submit needs --handler, --key and --payload (or --file); see submit --help")
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	res, err := c.Submit(ctx, []*workerpb.Job{{Id: *id, Handler: *handler, Key: *key, Payload: []byte(*payload),
		NotBeforeMs: notBefore, MaxAttempts: int32(*maxAttempts), TimeoutMs: jobTimeout.Milliseconds()}})
	if err != nil {
		return err
	}
	r := res[0]
	trace.SpanFromContext(ctx).SetAttributes(tracing.AttrJobID.String(r.Id), tracing.AttrHandler.String(*handler),
		tracing.AttrPartition.Int(int(r.Partition)))
	if r.Error != "" {
		return errors.New(r.Error)
	}
	note := ""
	if r.Duplicate {
		note = " (duplicate: already submitted, not enqueued again; " + client.StateName(r.State) + ")"
	}
	if out.json() {
		s := submittedJSON{ID: r.Id, Partition: r.Partition, Duplicate: r.Duplicate}
		if r.Duplicate {
			s.State = client.StateName(r.State)
		}
		var waitErr error
		if *wait {
			wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), *waitTimeout+g.timeout)
			defer wcancel()
			rs, err := c.Results(wctx, *waitTimeout, r.Id)
			if err != nil {
				return err
			}
			if len(rs) == 1 {
				rj := toResultJSON(rs[0])
				rj.ID = r.Id
				s.Result = &rj
				if rs[0].State != workerpb.JobResult_DONE {
					waitErr = fmt.Errorf("job %s is %s", r.Id, rj.State)
				}
			}
		}
		if err := printJSON(stdout, s); err != nil {
			return err
		}
		return waitErr
	}
	if *wait {
		fmt.Fprintf(stderr, "%s partition=%d%s\n", r.Id, r.Partition, note)
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), *waitTimeout+g.timeout)
		defer wcancel()
		return printResult(wctx, c, r.Id, *waitTimeout, stdout)
	}
	fmt.Fprintf(stdout, "%s partition=%d%s\n", r.Id, r.Partition, note)
	return nil
}

type submitStats struct {
	lines, submitted, duplicates, rejected int
}

func submitFile(ctx context.Context, c *client.Client, path string, stopOnError, quiet bool, stdin io.Reader, stdout, stderr io.Writer) error {
	in := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	if os.Getenv("GOGC") == "" {
		// Parsed jobs live only until their call returns; collecting less
		// often saves a good part of the CPU, as in the worker.
		debug.SetGCPercent(400)
	}
	sub, err := c.NewSubmitter(ctx)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 256<<10), 8<<20)
	start := time.Now()
	var (
		mu       sync.Mutex // guards st, fatal, unsent and the output
		st       submitStats
		fatal    error
		unsent   unsentLines
		stop     atomic.Bool // a lane failed, or rejected a job under --on-error stop
		wg       sync.WaitGroup
		lanes    [submitLanes]submitLane
		parser   lineParser
		ids      fileIDs
		reports  = lineReports{w: stderr, next: 1}
		prog     *fileProgress
		stopProg = func() {}
	)
	if !quiet {
		prog = newFileProgress(stderr, path)
		c.OnQueueFull(prog.queueFull)
		reports.before = prog.clear
		stopProgress := make(chan struct{})
		progressDone := make(chan struct{})
		go func() {
			defer close(progressDone)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
				}
				mu.Lock()
				prog.update(reports.n, st, false)
				mu.Unlock()
			}
		}()
		var once sync.Once
		stopProg = func() {
			once.Do(func() {
				close(stopProgress)
				<-progressDone
				mu.Lock()
				prog.update(reports.n, st, true)
				mu.Unlock()
				prog.finish()
			})
		}
		defer stopProg()
	}
	send := func(b submitLane) {
		res, err := sub.Submit(ctx, b.jobs)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			// The client retried already. The lane stops here: a later
			// call of it could carry a later job of a key this call holds.
			if fatal == nil {
				fatal = fmt.Errorf("lines %d-%d: %w", b.lines[0], b.lines[len(b.lines)-1], err)
			}
			unsent.add(b.lines)
			reports.settle(b.lines, "")
			stop.Store(true)
			return
		}
		for i, r := range res {
			switch {
			case r.Error != "":
				st.rejected++
				reports.settleOne(b.lines[i], fmt.Sprintf("line %d: rejected: %s", b.lines[i], r.Error))
				continue
			case r.Duplicate:
				st.duplicates++
			default:
				st.submitted++
			}
			reports.settleOne(b.lines[i], "")
		}
		if stopOnError && st.rejected > 0 {
			stop.Store(true)
		}
	}
	queues := make([]chan submitLane, submitLanes)
	for i := range queues {
		queues[i] = make(chan submitLane, 1)
		wg.Add(1)
		go func(q chan submitLane) {
			defer wg.Done()
			for b := range q {
				if !stop.Load() {
					send(b)
					continue
				}
				mu.Lock()
				unsent.add(b.lines)
				reports.settle(b.lines, "")
				mu.Unlock()
			}
		}(queues[i])
	}
	flush := func(i int) {
		if len(lanes[i].jobs) > 0 {
			queues[i] <- lanes[i]
			lanes[i] = submitLane{jobs: make([]*workerpb.Job, 0, submitBatch), lines: make([]int, 0, submitBatch)}
		}
	}
	finish := func() {
		for i := range lanes {
			flush(i)
			close(queues[i])
		}
		wg.Wait()
	}
	var malformed error
	eof := false
	for !stop.Load() {
		if !sc.Scan() {
			eof = true
			break
		}
		st.lines++
		line := sc.Bytes()
		if st.lines%1024 == 0 {
			for i := range lanes {
				if len(lanes[i].lines) > 0 && st.lines-lanes[i].lines[0] >= submitLag {
					flush(i)
				}
			}
		}
		if len(line) == 0 {
			mu.Lock()
			reports.settleOne(st.lines, "")
			mu.Unlock()
			continue
		}
		j, err := parser.parse(line)
		if err != nil {
			mu.Lock()
			st.rejected++
			reports.settleOne(st.lines, fmt.Sprintf("line %d: malformed JSON: %v", st.lines, err))
			mu.Unlock()
			if stopOnError {
				malformed = fmt.Errorf("stopped at line %d (--on-error stop)", st.lines)
				break
			}
			continue
		}
		if j.Id == "" {
			// Named here rather than by the worker, so that a call sent
			// again to another worker (the first timed out) is deduplicated,
			// and the same each run, so that a file sent again is too.
			j.Id = ids.name(st.lines, line)
		}
		l := sub.PartitionOf(j.Key) % submitLanes
		lanes[l].jobs = append(lanes[l].jobs, j)
		lanes[l].lines = append(lanes[l].lines, st.lines)
		lanes[l].bytes += len(j.Payload) + len(j.Id) + len(j.Key) + len(j.Handler)
		if len(lanes[l].jobs) >= submitBatch || lanes[l].bytes >= submitBatchBytes {
			flush(l)
		}
	}
	scanErr := sc.Err()
	finish()
	stopProg()
	reports.flush()
	if fatal != nil {
		notRead := ""
		switch {
		case !eof && path != "-":
			// Count the lines never read, so the report is whole.
			for sc.Scan() {
				st.lines++
				if len(sc.Bytes()) > 0 {
					unsent.add([]int{st.lines})
				}
			}
		case !eof:
			notRead = fmt.Sprintf("line %d", st.lines)
		}
		fmt.Fprintf(stdout, "submitted %d, duplicates %d, rejected %d, not sent %d\n", st.submitted, st.duplicates, st.rejected, unsent.n)
		return unsent.report(fatal, notRead)
	}
	if malformed != nil {
		return malformed
	}
	if scanErr != nil {
		return fmt.Errorf("read %s at line %d: %w", path, st.lines+1, scanErr)
	}
	if stopOnError && st.rejected > 0 {
		return fmt.Errorf("stopped at the first rejected job (--on-error stop)")
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "submitted %d, duplicates %d, rejected %d, in %.2fs (%.0f jobs/s)\n",
		st.submitted, st.duplicates, st.rejected, el.Seconds(), float64(st.submitted+st.duplicates)/el.Seconds())
	if st.rejected > 0 {
		return fmt.Errorf("%d of %d lines rejected", st.rejected, st.lines)
	}
	return nil
}

// lineReports prints the per-line reports of a file submission in file
// order, though the lanes answer out of it: a line's report waits until
// every earlier line is settled (blank, malformed, answered, or not sent).
// The caller serializes its calls.
type lineReports struct {
	w       io.Writer
	before  func()         // called before a report is printed; nil: nothing
	n       int            // lines settled
	next    int            // the first line not settled yet
	settled []bool         // settled[i]: line next+i is settled
	msgs    map[int]string // reports of settled lines not printed yet
}

func (r *lineReports) settle(lines []int, msg string) {
	for _, l := range lines {
		r.settleOne(l, msg)
	}
}

// settleOne settles line l with its report ("" for none) and prints every
// report that no earlier line holds back any more.
func (r *lineReports) settleOne(l int, msg string) {
	if l < r.next {
		return
	}
	for len(r.settled) <= l-r.next {
		r.settled = append(r.settled, false)
	}
	if !r.settled[l-r.next] {
		r.n++
	}
	r.settled[l-r.next] = true
	if msg != "" {
		if r.msgs == nil {
			r.msgs = map[int]string{}
		}
		r.msgs[l] = msg
	}
	n := 0
	for n < len(r.settled) && r.settled[n] {
		if m, ok := r.msgs[r.next+n]; ok {
			if r.before != nil {
				r.before()
			}
			fmt.Fprintln(r.w, m)
			delete(r.msgs, r.next+n)
		}
		n++
	}
	r.next += n
	r.settled = r.settled[n:]
}

// flush prints the reports still held, in line order.
func (r *lineReports) flush() {
	lines := make([]int, 0, len(r.msgs))
	for l := range r.msgs {
		lines = append(lines, l)
	}
	sort.Ints(lines)
	for _, l := range lines {
		fmt.Fprintln(r.w, r.msgs[l])
	}
	r.msgs = nil
}

// fileIDs names the id-less lines of a jobs file: "f-" and a hash of the
// line number and the line, so that the same file sent again names them
// the same (and its jobs are duplicates), and identical lines differ.
type fileIDs struct {
	buf []byte
}

func (f *fileIDs) name(lineNo int, line []byte) string {
	f.buf = strconv.AppendInt(f.buf[:0], int64(lineNo), 10)
	f.buf = append(f.buf, 0)
	f.buf = append(f.buf, line...)
	sum := sha256.Sum256(f.buf)
	return "f-" + hex.EncodeToString(sum[:16])
}

// unsentLines counts the lines a failed submission did not send and finds
// the first of them.
type unsentLines struct {
	n, first int
}

func (u *unsentLines) add(lines []int) {
	for _, l := range lines {
		if u.n == 0 || l < u.first {
			u.first = l
		}
		u.n++
	}
}

// report is the error of a submission that failed with err; notRead, when
// set, is the last line read when the input after it was not read.
func (u *unsentLines) report(err error, notRead string) error {
	what := fmt.Sprintf("%d lines not sent, the first is line %d", u.n, u.first)
	if notRead != "" {
		what = fmt.Sprintf("%d lines read but not sent, the first is line %d, and the input after %s was not read", u.n, u.first, notRead)
	}
	return fmt.Errorf("%s: %w\nsend the same file again to finish: lines already accepted are reported as duplicates (lines without an id are named from their line number and content)", what, err)
}

// lineParser turns lines of a jobs file into jobs. A line of the usual
// form (id, handler and key as plain strings, in any order, other fields
// ignored) is read in one pass with jsonscan, its payload copied into a
// shared block and its key and handler names reused; any other line goes
// through encoding/json, which reads it the same way and words the errors.
type lineParser struct {
	block   []byte            // payloads of recent lines; jobs point into it
	jobs    []workerpb.Job    // jobs handed out from one allocation
	handler string            // the last handler name
	keys    map[string]string // keys seen, reused
}

// maxReusedKeys bounds the keys a lineParser remembers.
const maxReusedKeys = 1 << 16

func (p *lineParser) parse(line []byte) (*workerpb.Job, error) {
	var id, handler, key, payload []byte
	var plain = true
	valid, isObject := jsonscan.Object(line, func(m jsonscan.Member) {
		if m.NeedsUnquote {
			plain = false
			return
		}
		var field *[]byte
		switch string(m.Key) {
		case "id":
			field = &id
		case "handler":
			field = &handler
		case "key":
			field = &key
		case "payload":
			if string(m.Value) == "null" {
				plain = false // encoding/json's own handling of null
			}
			payload = m.Value
			return
		default:
			// encoding/json also matches field names case-insensitively.
			k := string(m.Key)
			if strings.EqualFold(k, "id") || strings.EqualFold(k, "handler") || strings.EqualFold(k, "key") || strings.EqualFold(k, "payload") {
				plain = false
			}
			return
		}
		v := m.Value
		if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 {
			plain = false // null, another type, or escapes
			return
		}
		v = v[1 : len(v)-1]
		for _, c := range v {
			if c >= utf8.RuneSelf {
				plain = plain && utf8.Valid(v)
				break
			}
		}
		*field = v
	})
	if !valid || !isObject || !plain {
		var fj fileJob
		if err := json.Unmarshal(line, &fj); err != nil {
			return nil, err
		}
		return &workerpb.Job{Id: fj.ID, Handler: fj.Handler, Key: fj.Key, Payload: []byte(fj.Payload)}, nil
	}
	if len(p.jobs) == 0 {
		p.jobs = make([]workerpb.Job, 256)
	}
	j := &p.jobs[0]
	p.jobs = p.jobs[1:]
	j.Id = string(id)
	if string(handler) != p.handler {
		p.handler = string(handler)
	}
	j.Handler = p.handler
	j.Key = p.reuse(key)
	if payload != nil {
		if cap(p.block)-len(p.block) < len(payload) {
			p.block = make([]byte, 0, max(256<<10, len(payload)))
		}
		n := len(p.block)
		p.block = append(p.block, payload...)
		j.Payload = p.block[n:len(p.block):len(p.block)]
	}
	return j, nil
}

// reuse returns a string of k, the same one for a key seen before.
func (p *lineParser) reuse(k []byte) string {
	if s, ok := p.keys[string(k)]; ok {
		return s
	}
	s := string(k)
	if p.keys == nil {
		p.keys = map[string]string{}
	}
	if len(p.keys) < maxReusedKeys {
		p.keys[s] = s
	}
	return s
}
