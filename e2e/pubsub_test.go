package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// pubsubCluster starts n workers running the pubsub test plugin.
func pubsubCluster(t *testing.T, n int) *cluster {
	c := newCluster(t)
	path := filepath.Join(c.bins, "pubsub-plugin")
	if _, err := os.Stat(path); err != nil {
		root, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-o", path, "./e2e/testdata/pubsub")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build pubsub plugin: %v\n%s", err, out)
		}
	}
	for i := 1; i <= n; i++ {
		c.launch(fmt.Sprintf("w%d", i), workerRun{plugin: path})
	}
	return c
}

// seqMessage is what the plugin's seq.publish publishes.
type seqMessage struct {
	Key   string `json:"key"`
	N     int    `json:"n"`
	Count int    `json:"count"`
}

// seqJobs are perKey jobs for each of keys keys, n-th jobs of every key
// before the n+1-th, numbered from first.
func seqJobs(keys, first, perKey int) []*workerpb.Job {
	var jobs []*workerpb.Job
	for n := first; n < first+perKey; n++ {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			jobs = append(jobs, &workerpb.Job{Id: fmt.Sprintf("seq-%s-%d", key, n), Handler: "seq.publish", Key: key,
				Payload: []byte(fmt.Sprintf(`{"n":%d}`, n))})
		}
	}
	return jobs
}

// TestSubscribeAcrossKill: a subscriber gets the message of every one of
// 10,000 committed jobs exactly once, in each key's order, while the
// worker serving its subscription is SIGKILLed half-way (it also owns
// partitions, so jobs in flight there run again on their new owner and
// publish only when they commit).
func TestSubscribeAcrossKill(t *testing.T) {
	c := pubsubCluster(t, 3)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var got []client.Message
	connected := make(chan string, 16)
	sub := &client.Subscription{Topics: []string{"seq"}, Connected: func(worker string, _ int64) { connected <- worker }}
	subDone := make(chan error, 1)
	go func() {
		subDone <- cl.Subscribe(ctx, sub, func(m client.Message) error {
			mu.Lock()
			got = append(got, m)
			mu.Unlock()
			return nil
		})
	}()
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	var serving string
	select {
	case serving = <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("no worker took the subscription in 30s")
	}
	const keys, perKey = 100, 100
	submitJobs(t, c, seqJobs(keys, 0, perKey/2))
	testenv.Eventually(t, time.Minute, func() error {
		if n := received(); n < keys*perKey/4 {
			return fmt.Errorf("%d messages received", n)
		}
		return nil
	})
	before := received()
	c.signal(serving, syscall.SIGKILL)
	t.Logf("SIGKILLed %s, which served the subscription, after %d messages", serving, before)
	submitJobs(t, c, seqJobs(keys, perKey/2, perKey/2))
	select {
	case w := <-connected:
		t.Logf("the subscription went on on %s", w)
	case <-time.After(30 * time.Second):
		t.Fatal("the subscription found no other worker in 30s")
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		if n := received(); n < keys*perKey {
			return fmt.Errorf("%d of %d messages received", n, keys*perKey)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a message delivered twice would come by now
	cancel()
	if err := <-subDone; !errors.Is(err, context.Canceled) {
		t.Errorf("subscribe ended with %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != keys*perKey {
		t.Errorf("%d messages, want %d", len(got), keys*perKey)
	}
	next := map[string]int{}
	lastID := map[int]string{}
	for _, m := range got {
		var s seqMessage
		if err := json.Unmarshal(m.Data, &s); err != nil {
			t.Fatalf("message %s: %v", m.Data, err)
		}
		if s.N != next[s.Key] {
			t.Fatalf("key %s: message of job %d came after %d of its messages: lost, repeated or out of order", s.Key, s.N, next[s.Key])
		}
		if s.Count != s.N {
			t.Fatalf("key %s: job %d saw %d committed before it", s.Key, s.N, s.Count)
		}
		next[s.Key]++
		if prev := lastID[m.Partition]; prev != "" && !streamIDBefore(prev, m.ID) {
			t.Fatalf("partition %d: message %s after %s", m.Partition, m.ID, prev)
		}
		lastID[m.Partition] = m.ID
	}
	for k := range keys {
		if n := next[fmt.Sprintf("k%d", k)]; n != perKey {
			t.Errorf("key k%d: %d messages, want %d", k, n, perKey)
		}
	}
}

// startWatch runs coordinator watch ARGS with a read certificate, logs
// its stderr, and returns it and its stdout once it says it is watching.
func startWatch(t *testing.T, c *cluster, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bins, "coordinator"), append([]string{"--consul", c.consul.Addr, "watch"}, args...)...)
	cmd.Env = append(os.Environ(), c.coordinatorEnv(pki.RoleRead)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	watching := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("watch: %s", sc.Text())
			if strings.HasPrefix(sc.Text(), "watching") {
				select {
				case watching <- struct{}{}:
				default:
				}
			}
		}
	}()
	select {
	case <-watching:
	case <-time.After(30 * time.Second):
		t.Fatal("coordinator watch did not start in 30s")
	}
	return cmd, stdout
}

func streamIDBefore(a, b string) bool {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am < bm || am == bm && as < bs
}

// TestPublishOnlyCommitted: a handler that publishes on every attempt and
// retries its first: `coordinator watch` prints only the second attempts'
// messages, each once.
func TestPublishOnlyCommitted(t *testing.T) {
	c := pubsubCluster(t, 2)
	const n = 200
	cmd, stdout := startWatch(t, c, "--verbose", "--count", fmt.Sprint(n+1), "--for", "20s", "flaky")
	var jobs []*workerpb.Job
	for i := range n {
		jobs = append(jobs, &workerpb.Job{Id: fmt.Sprintf("flaky-%d", i), Handler: "flaky.publish", Key: fmt.Sprintf("f%d", i%17), Payload: []byte(`{}`)})
	}
	submitJobs(t, c, jobs)
	seen := map[string]int{}
	sc := bufio.NewScanner(stdout)
	lines := 0
	for sc.Scan() {
		lines++
		f := strings.SplitN(sc.Text(), " ", 5)
		if len(f) != 5 || f[0] != "flaky" {
			t.Fatalf("watch printed %q", sc.Text())
		}
		var a struct {
			ID      string `json:"id"`
			Attempt int    `json:"attempt"`
		}
		if err := json.Unmarshal([]byte(f[4]), &a); err != nil {
			t.Fatalf("watch printed %q: %v", sc.Text(), err)
		}
		if a.Attempt != 2 || a.ID != f[3] {
			t.Errorf("message of job %s attempt %d (published by %s) reached a subscriber", a.ID, a.Attempt, f[3])
		}
		seen[a.ID]++
	}
	cmd.Wait() // --for ends it: n+1 messages never come
	if lines != n || len(seen) != n {
		t.Errorf("watch printed %d messages of %d jobs, want %d of %d", lines, len(seen), n, n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("job %s published %d times", id, k)
		}
	}
}

// TestWatchEntity: `coordinator watch --entity donor --key alice` prints
// alice's state after each of 1,000 donations, in order, each once
// (batches that run several of her jobs included), and nothing of other
// donors.
func TestWatchEntity(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	c.start("w2")
	const n = 1000
	cmd, stdout := startWatch(t, c, "--count", fmt.Sprint(n), "--for", "120s", "--entity", "donor", "--key", "alice")
	var jobs []*workerpb.Job
	for i := range n {
		for _, donor := range []string{"alice", "bob"} {
			jobs = append(jobs, &workerpb.Job{Id: fmt.Sprintf("gift-%s-%d", donor, i), Handler: "donor.donate", Key: donor,
				Payload: []byte(`{"amount_cents":100,"campaign":"water"}`)})
		}
	}
	submitJobs(t, c, jobs)
	sc := bufio.NewScanner(stdout)
	var want int64 = 1
	for sc.Scan() {
		var s struct {
			TotalCents int64 `json:"total_cents"`
			Count      int64 `json:"count"`
		}
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("watch printed %q: %v", sc.Text(), err)
		}
		if s.Count != want || s.TotalCents != 100*want {
			t.Fatalf("state %d printed %s: a state lost, repeated or out of order", want, sc.Text())
		}
		want++
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch: %v", err)
	}
	if want != n+1 {
		t.Fatalf("watch printed %d states of %d", want-1, n)
	}
}

// TestClusterEvents: a subscriber to the cluster's events hears a worker
// join, and, when it is SIGKILLed, leave and its partitions move to the
// survivor with their new epochs; coordinator status shows the last ones.
func TestClusterEvents(t *testing.T) {
	c := newCluster(t)
	c.start("w1")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type event struct {
		Kind      string `json:"kind"`
		Member    string `json:"member"`
		Partition *int   `json:"partition"`
		From, To  string
		Epoch     int64
	}
	events := make(chan event, 1024)
	live := make(chan struct{}, 1)
	sub := &client.Subscription{Topics: []string{client.ClusterTopic}, Connected: func(string, int64) {
		select {
		case live <- struct{}{}:
		default:
		}
	}}
	go cl.Subscribe(ctx, sub, func(m client.Message) error {
		var e event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Errorf("event %s: %v", m.Data, err)
		}
		events <- e
		return nil
	})
	<-live
	await := func(what string, ok func(event) bool) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case e := <-events:
				if ok(e) {
					t.Logf("%s: %+v", what, e)
					return
				}
			case <-deadline:
				t.Fatalf("no %s in 60s", what)
			}
		}
	}
	c.start("w2")
	// w2 joins the layout itself, so its claims may come before Consul
	// tells w1 of it: in either order.
	joined, claimed := false, false
	await("w2 joined and a partition moved to w2", func(e event) bool {
		joined = joined || e.Kind == "member.joined" && e.Member == "w2"
		claimed = claimed || e.Kind == "partition.moved" && e.To == "w2" && e.Epoch > 0
		return joined && claimed
	})
	// w2 claims its whole share before it is killed: half the partitions
	// (the layout gives two members exact shares).
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.Status(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("status: %v", err)
		}
		owned := 0
		for _, m := range st.Members {
			if m.Id == "w2" {
				owned = len(m.Partitions)
			}
		}
		if share := int(st.Partitions) / 2; owned != share {
			return fmt.Errorf("w2 owns %d partitions, its share is %d", owned, share)
		}
		return nil
	})
	c.signal("w2", syscall.SIGKILL)
	// Its partitions move when its lease lapses, and Consul drops it when
	// its check does: in either order.
	left, moved := false, false
	await("w2 left and a partition moved from w2 to w1", func(e event) bool {
		left = left || e.Kind == "member.left" && e.Member == "w2"
		moved = moved || e.Kind == "partition.moved" && e.From == "w2" && e.To == "w1"
		return left && moved
	})
	// w1's plugin dies: the next batch relaunches it.
	for _, pid := range c.pluginPids("w1") {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	submitJobs(t, c, []*workerpb.Job{{Id: "after-plugin-kill", Handler: "donor.donate", Key: "carol", Payload: []byte(`{"amount_cents":1,"campaign":"water"}`)}})
	await("w1's plugin restarted", func(e event) bool { return e.Kind == "plugin.restarted" && e.Member == "w1" })
	if _, err := c.coordinator("reload"); err != nil {
		t.Fatal(err)
	}
	await("w1's plugin reloaded", func(e event) bool { return e.Kind == "plugin.reloaded" && e.Member == "w1" })
	out, err := c.coordinator("status")
	if err != nil || !strings.Contains(out, "recent cluster events") || !strings.Contains(out, "plugin.reloaded donations") {
		t.Fatalf("status does not show the events: %v\n%s", err, out)
	}
	t.Logf("status:\n%s", out)
}

// TestHandlerSubscription: a handler that subscribes to a topic runs once
// per message, in each key's order, though the workers consuming it come
// and go (one is SIGKILLed half-way).
func TestHandlerSubscription(t *testing.T) {
	c := pubsubCluster(t, 3)
	cl := c.client()
	// The subscription starts when its consumer first sees it: it saves
	// its place, "from" in the home partition's consumer hash. Messages
	// published before then are not its to run.
	rdb := c.redis.Client(t)
	home := keys.For(sharding.PartitionOf("t~seq~tally.count", sharding.DefaultPartitions)).Consumer("tally.count", "seq")
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := rdb.HGet(context.Background(), home, "from").Err(); err != nil {
			return fmt.Errorf("the consumer of seq for tally.count has no place yet: HGET %s from: %v", home, err)
		}
		return nil
	})
	const keys, perKey = 20, 25
	submitJobs(t, c, seqJobs(keys, 0, perKey/2))
	// w3 is killed half-way: once the subscribed handler is running.
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := cl.State(ctx, "tally", "seq")
		if err != nil || len(st) != 1 || !st[0].Found {
			return fmt.Errorf("tally has counted nothing yet: %v %v", st, err)
		}
		return nil
	})
	c.signal("w3", syscall.SIGKILL)
	submitJobs(t, c, seqJobs(keys, perKey/2, perKey-perKey/2))
	var last string
	testenv.Eventually(t, 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := cl.State(ctx, "tally", "seq")
		if err != nil || len(st) != 1 || !st[0].Found {
			return fmt.Errorf("tally: %v %v", st, err)
		}
		last = string(st[0].State)
		var s struct {
			Count int    `json:"count"`
			Bad   string `json:"bad"`
		}
		json.Unmarshal(st[0].State, &s)
		if s.Bad != "" {
			t.Fatalf("subscribed handler saw %s", s.Bad)
		}
		if s.Count < keys*perKey {
			return fmt.Errorf("tally counted %d of %d", s.Count, keys*perKey)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a message run twice would be counted by now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cl.State(ctx, "tally", "seq")
	if err != nil || string(st[0].State) != last {
		t.Fatalf("tally changed after every message was counted: %s, then %v %v", last, st, err)
	}
}

// TestSubscribeAcrossStop: the worker serving a subscription is frozen
// (SIGSTOP): its silence (no heartbeat) moves the subscription to another
// worker, which goes on where it was, nothing lost or repeated.
func TestSubscribeAcrossStop(t *testing.T) {
	c := pubsubCluster(t, 3)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	next := map[string]int{}
	bad, total := "", 0
	connected := make(chan string, 16)
	sub := &client.Subscription{Topics: []string{"seq"}, Connected: func(worker string, _ int64) { connected <- worker }}
	go cl.Subscribe(ctx, sub, func(m client.Message) error {
		var s seqMessage
		json.Unmarshal(m.Data, &s)
		mu.Lock()
		defer mu.Unlock()
		if s.N != next[s.Key] && bad == "" {
			bad = fmt.Sprintf("key %s: message %d after %d of its messages", s.Key, s.N, next[s.Key])
		}
		next[s.Key]++
		total++
		return nil
	})
	serving := <-connected
	const keys, perKey = 20, 25
	submitJobs(t, c, seqJobs(keys, 0, perKey/2))
	c.signal(serving, syscall.SIGSTOP)
	stopped := time.Now()
	defer c.signal(serving, syscall.SIGCONT)
	select {
	case w := <-connected:
		t.Logf("the subscription moved from frozen %s to %s after %v", serving, w, time.Since(stopped).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("the subscription stayed on the frozen worker for 60s")
	}
	submitJobs(t, c, seqJobs(keys, perKey/2, perKey-perKey/2))
	testenv.Eventually(t, 2*time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if bad != "" {
			t.Fatal(bad)
		}
		if total < keys*perKey {
			return fmt.Errorf("%d of %d messages", total, keys*perKey)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a message delivered twice would come by now
	mu.Lock()
	defer mu.Unlock()
	if total != keys*perKey || bad != "" {
		t.Fatalf("%d messages, want %d (%s)", total, keys*perKey, bad)
	}
}
