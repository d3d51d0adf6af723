package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/sharding"
)

func TestRelayHoldsBackOff(t *testing.T) {
	t.Parallel()
	h := relayHolds{until: map[int]time.Time{}, delay: map[int]time.Duration{}}
	now := time.Unix(1000, 0)
	var got []time.Duration
	for i := 0; i < 10; i++ {
		got = append(got, h.failed(3, now))
	}
	if got[0] != relayBackoff || got[1] != 2*relayBackoff || got[9] != relayBackoffMax {
		t.Fatalf("backoff %v", got)
	}
	if h.expire(now.Add(relayBackoffMax - time.Millisecond)) {
		t.Fatal("hold ended early")
	}
	if !h.expire(now.Add(relayBackoffMax)) || len(h.until) != 0 {
		t.Fatal("hold did not end")
	}
}

var errTargetDown = errors.New("target partition down")

// memEntry is one outbox entry: a commit's emitted jobs, one per target.
type memEntry struct {
	id      int
	targets []int
}

// relayMark names an entry's jobs for one target, as the store's relay
// mark does.
type relayMark struct{ entry, target int }

// relayCall is what the relay asked of one RelayMany, and what it tried.
type relayCall struct {
	at      time.Time
	sources []store.RelaySource
	max     int64
	held    []int // targets the relay said were held back
	tried   []int // targets written to, or failing
	failed  []int // targets that failed
}

// memOutbox keeps outboxes in memory the way the store does: entries are
// read in id order after a source's cursor, an entry's jobs are added to a
// target once however often it is relayed there (the mark), and an entry
// goes once every target took its jobs. The relay's marks and trims are
// the store's (see store's relay tests); this models them so the tests
// can follow the loop's cursor and holds.
type memOutbox struct {
	partitions int // of the ring, to name a key in a target partition

	mu       sync.Mutex
	next     int                // the next entry's id
	entries  map[int][]memEntry // per source partition, in id order
	failing  map[int]bool       // targets whose enqueue fails
	failNext error              // the next round adds and marks, then fails to trim
	marked   map[relayMark]bool
	sent     map[relayMark]int // how often an entry's jobs were sent to a target
	got      map[int][]int     // per target, the entries whose jobs were added, in order
	calls    []relayCall
	sweeps   int // SweepFinished calls
}

func newMemOutbox() *memOutbox {
	return &memOutbox{partitions: DefaultConfig().Ring.Partitions, next: 1, entries: map[int][]memEntry{},
		failing: map[int]bool{}, marked: map[relayMark]bool{}, sent: map[relayMark]int{}, got: map[int][]int{}}
}

// keyIn is a job key of partition p.
func (m *memOutbox) keyIn(p int) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("k%d", i); sharding.PartitionOf(k, m.partitions) == p {
			return k
		}
	}
}

func (m *memOutbox) RelayMany(_ context.Context, sources []store.RelaySource, max int64, partitionOf func(string) int, held func(int) bool) (store.RelayRound, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	round := store.RelayRound{Sources: map[int]store.SourceRelay{}, Reached: map[int]int{}, Failed: map[int]error{}}
	call := relayCall{at: time.Now(), sources: slices.Clone(sources), max: max}
	note := func(ts *[]int, t int) {
		if !slices.Contains(*ts, t) {
			*ts = append(*ts, t)
		}
	}
	for _, src := range sources {
		after := 0
		if src.After != "" {
			after, _ = strconv.Atoi(src.After)
		}
		var read []memEntry
		for _, e := range m.entries[src.Partition] {
			if e.id > after && int64(len(read)) < max {
				read = append(read, e)
			}
		}
		out := store.SourceRelay{Read: len(read)}
		if len(read) > 0 {
			out.Last = strconv.Itoa(read[len(read)-1].id)
		}
		gone := map[int]bool{}
		for _, e := range read {
			done := true
			for _, target := range e.targets {
				// The relay names a job's target by the ring's partition of its key.
				t := partitionOf(m.keyIn(target))
				if held(t) {
					note(&call.held, t)
					done = false
					continue
				}
				note(&call.tried, t)
				if m.failing[t] {
					round.Failed[t] = errTargetDown
					note(&call.failed, t)
					done = false
					continue
				}
				mk := relayMark{e.id, t}
				m.sent[mk]++
				n := round.Reached[t]
				if !m.marked[mk] {
					m.marked[mk] = true
					m.got[t] = append(m.got[t], e.id)
					n++
				}
				round.Reached[t] = n
			}
			if done {
				gone[e.id] = true
				out.Moved++
			} else {
				out.Kept++
			}
		}
		round.Sources[src.Partition] = out
		if m.failNext == nil {
			m.entries[src.Partition] = slices.DeleteFunc(m.entries[src.Partition], func(e memEntry) bool { return gone[e.id] })
		}
	}
	for t := range round.Failed {
		delete(round.Reached, t)
	}
	m.calls = append(m.calls, call)
	if err := m.failNext; err != nil {
		m.failNext = nil
		return round, err
	}
	return round, nil
}

// SweepFinished drops nothing and counts the calls; the upkeep asks for it.
func (m *memOutbox) SweepFinished(_ context.Context, parts []int) (map[int]store.Swept, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweeps++
	return map[int]store.Swept{}, nil
}

// TrimDead drops nothing; the sweep asks for it.
func (m *memOutbox) TrimDead(context.Context, []int, time.Time) (map[int]store.DeadTrim, error) {
	return nil, nil
}

// add appends an entry with jobs for targets to source's outbox and
// returns its id.
func (m *memOutbox) add(source int, targets ...int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.next
	m.next++
	m.entries[source] = append(m.entries[source], memEntry{id: id, targets: targets})
	return id
}

func (m *memOutbox) setFailing(t int, failing bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failing[t] = failing
}

func (m *memOutbox) received(t int) []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.got[t])
}

func (m *memOutbox) left(source int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries[source])
}

func (m *memOutbox) relayCalls() []relayCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

func (m *memOutbox) timesSent(entry, target int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent[relayMark{entry, target}]
}

func testRelay(t *testing.T, st relayStore, grants fakeGrants) *relay {
	return newRelay(DefaultConfig(), slog.New(slog.NewTextHandler(testWriter{t}, nil)), st, grants)
}

// runRelay runs rl until the test ends.
func runRelay(t *testing.T, rl *relay) { runLoop(t, rl.run) }

// runLoop runs loop until the test ends.
func runLoop(t *testing.T, loop func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// idRange lists first..last.
func idRange(first, last int) []int {
	var out []int
	for i := first; i <= last; i++ {
		out = append(out, i)
	}
	return out
}

// TestRelayKickRelaysAtOnce: a kick relays that partition's outbox without
// waiting for the sweep, which here lists nothing (no partition is owned);
// kicks made meanwhile are gathered in one round, each partition once,
// sharing the round's entries.
func TestRelayKickRelaysAtOnce(t *testing.T) {
	t.Parallel()
	st := newMemOutbox()
	st.add(5, 7, 9)
	st.add(3, 9)
	rl := testRelay(t, st, fakeGrants{})
	rl.kick(5)
	rl.kick(3)
	rl.kick(5)
	runRelay(t, rl)
	waitUntil(t, "the kicked outboxes relayed", func() bool { return st.left(3)+st.left(5) == 0 })

	calls := st.relayCalls()
	want := []store.RelaySource{{Partition: 3}, {Partition: 5}}
	if len(calls) != 1 || !slices.Equal(calls[0].sources, want) || calls[0].max != relayEntries/2 {
		t.Fatalf("relay rounds %+v, want one reading %v, %d entries each", calls, want, relayEntries/2)
	}
	if got := st.received(7); !slices.Equal(got, []int{1}) {
		t.Errorf("target 7 got entries %v, want [1]", got)
	}
	if got := slices.Sorted(slices.Values(st.received(9))); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("target 9 got entries %v, want [1 2]", got)
	}
}

// TestRelayHoldsAFailingTargetAndGoesOn: target 7 fails. It is held back
// while target 9 gets every job, reading on past the entries kept for 7
// from a cursor; once the hold ends the outbox is read from its head again
// and 7 gets its jobs in outbox order, and each target each job once.
func TestRelayHoldsAFailingTargetAndGoesOn(t *testing.T) {
	t.Parallel()
	st := newMemOutbox()
	const n = relayEntries + relayEntries/2 // more than one round reads
	for range n {
		st.add(5, 7, 9)
	}
	st.setFailing(7, true)
	rl := testRelay(t, st, fakeGrants{5: lease.Grant{Epoch: 1}}) // the sweep comes back to 5
	rl.kick(5)
	runRelay(t, rl)

	waitUntil(t, "target 9 to get every entry while 7 fails", func() bool { return len(st.received(9)) == n })
	if got := st.received(7); len(got) != 0 {
		t.Fatalf("failing target 7 got entries %v", got)
	}
	calls := st.relayCalls()
	if len(calls) < 2 {
		t.Fatalf("relay rounds %+v, want two", calls)
	}
	first, second := calls[0], calls[1]
	if !slices.Equal(first.sources, []store.RelaySource{{Partition: 5}}) || !slices.Contains(first.tried, 7) {
		t.Fatalf("first round %+v, want it to read 5 from the head and try 7", first)
	}
	// The first round read a full round's worth, all kept for 7: the second
	// goes on after them, with 7 held.
	after := strconv.Itoa(relayEntries)
	if !slices.Equal(second.sources, []store.RelaySource{{Partition: 5, After: after}}) || !slices.Equal(second.held, []int{7}) || slices.Contains(second.tried, 7) {
		t.Fatalf("second round %+v, want it to read 5 after entry %s with 7 held", second, after)
	}
	if got := st.received(9); !slices.Equal(got, idRange(1, n)) {
		t.Fatalf("target 9 got entries %v, want 1..%d in order", got, n)
	}

	st.setFailing(7, false)
	waitUntil(t, "target 7 to get its jobs once it works", func() bool { return st.left(5) == 0 })
	if got := st.received(7); !slices.Equal(got, idRange(1, n)) {
		t.Errorf("target 7 got entries %v, want 1..%d in order", got, n)
	}
	if got := st.received(9); !slices.Equal(got, idRange(1, n)) {
		t.Errorf("target 9 got entries %v, want 1..%d once each", got, n)
	}
	// A held target is tried again no sooner than its backoff, and then
	// from the head of the outbox.
	var failedAt time.Time // of the last failure of 7 not followed by a try
	for i, c := range st.relayCalls() {
		if !slices.Contains(c.tried, 7) {
			continue
		}
		if !failedAt.IsZero() {
			if gap := c.at.Sub(failedAt); gap < relayBackoff {
				t.Errorf("round %d tried 7 again %v after it failed, before the %v backoff", i, gap, relayBackoff)
			}
			if c.sources[0].After != "" {
				t.Errorf("round %d, the first after the hold, read from %q, want the head", i, c.sources[0].After)
			}
		}
		failedAt = time.Time{}
		if slices.Contains(c.failed, 7) {
			failedAt = c.at
		}
	}
}

// TestRelayAfterAFailedRoundReadsFromTheHead: a round that added the jobs
// but failed before dropping its entries leaves no cursor, so the next
// reads the entries again from the head; the marks keep their jobs from
// being added twice.
func TestRelayAfterAFailedRoundReadsFromTheHead(t *testing.T) {
	t.Parallel()
	st := newMemOutbox()
	st.add(5, 7)
	st.add(5, 7, 9)
	st.failNext = errors.New("trim outboxes: connection reset")
	rl := testRelay(t, st, fakeGrants{})
	rl.kick(5)
	runRelay(t, rl)
	waitUntil(t, "the failed round", func() bool { return len(st.relayCalls()) == 1 })
	if st.left(5) != 2 {
		t.Fatalf("the failed round dropped entries: %d left, want 2", st.left(5))
	}

	rl.kick(5)
	waitUntil(t, "the outbox relayed", func() bool { return st.left(5) == 0 })
	calls := st.relayCalls()
	if len(calls) != 2 || !slices.Equal(calls[1].sources, []store.RelaySource{{Partition: 5}}) {
		t.Fatalf("relay rounds %+v, want a second one reading 5 from the head", calls)
	}
	if st.timesSent(1, 7) != 2 || st.timesSent(2, 9) != 2 {
		t.Fatalf("entries sent %d and %d times, want both twice (the test needs the second relay)", st.timesSent(1, 7), st.timesSent(2, 9))
	}
	if got := st.received(7); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("target 7 got entries %v, want [1 2] once each", got)
	}
	if got := st.received(9); !slices.Equal(got, []int{2}) {
		t.Errorf("target 9 got entries %v, want [2] once", got)
	}
}

// TestUpkeepSweepsFinishedRecords: the owner's upkeep sweeps the finished
// records of the partitions it holds (their records have no time to live
// of their own), and not those of a worker that holds none.
func TestUpkeepSweepsFinishedRecords(t *testing.T) {
	t.Parallel()
	st, idle := newMemOutbox(), newMemOutbox()
	runLoop(t, testRelay(t, st, fakeGrants{5: lease.Grant{Epoch: 1}}).sweepLoop)
	runLoop(t, testRelay(t, idle, fakeGrants{}).sweepLoop)
	sweeps := func(m *memOutbox) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.sweeps
	}
	waitUntil(t, "the upkeep to sweep partition 5", func() bool { return sweeps(st) > 0 })
	if n := sweeps(idle); n != 0 {
		t.Fatalf("a worker holding no partition swept %d times", n)
	}
}
