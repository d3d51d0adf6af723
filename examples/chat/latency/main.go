// Command chat-latency measures a cluster running the chat plugin: how
// long a published message takes from its commit to a subscriber, and
// from its submission; how long `coordinator submit --wait` takes (submit,
// then wait for the result, as the command does, without its process
// start); and, given the cluster's Redis, what a topic costs Redis per
// message.
//
//	chat-latency --consul 127.0.0.1:8500 --n 2000 --redis 127.0.0.1:6379
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/client"
	"github.com/redis/go-redis/v9"
)

func main() {
	consul := flag.String("consul", "127.0.0.1:8500", "Consul agent HTTP address")
	n := flag.Int("n", 2000, "posts to publish, one at a time")
	every := flag.Duration("every", 2*time.Millisecond, "pause between posts")
	waits := flag.Int("wait-jobs", 200, "jobs to submit and wait for one by one, as submit --wait does (0: skip)")
	redisAddr := flag.String("redis", "", "the cluster's Redis, to count what the topic costs it (empty: skip)")
	room := flag.String("room", fmt.Sprintf("bench%d", time.Now().UnixNano()%1_000_000), "the room (topic chat.ROOM) to post to")
	flag.Parse()
	c, err := client.New(client.Config{ConsulAddr: *consul})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if *waits > 0 {
		if err := measureWait(ctx, c, *waits); err != nil {
			log.Fatal(err)
		}
	}
	var rdb *redis.Client
	var before map[string]int64
	if *redisAddr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: *redisAddr})
		before = commandCalls(ctx, rdb)
	}
	if err := measurePublish(ctx, c, *room, *n, *every); err != nil {
		log.Fatal(err)
	}
	if rdb != nil {
		topicCost(ctx, rdb, "chat."+*room, *n, before)
	}
}

// measureWait submits jobs one by one and waits for each one's result.
func measureWait(ctx context.Context, c *client.Client, n int) error {
	var took, waited []time.Duration
	for i := range n {
		id := fmt.Sprintf("wait-%d-%d", time.Now().UnixNano(), i)
		start := time.Now()
		res, err := c.Submit(ctx, []*workerpb.Job{{Id: id, Handler: "room.post", Key: fmt.Sprintf("w%d", i%50), Payload: []byte(`{"from":"bench","text":"wait"}`)}})
		if err != nil || res[0].Error != "" {
			return fmt.Errorf("submit: %v %v", err, res)
		}
		submitted := time.Now()
		rs, err := c.Results(ctx, 10*time.Second, id)
		if err != nil || rs[0].State != workerpb.JobResult_DONE {
			return fmt.Errorf("wait: %v %v", err, rs)
		}
		took, waited = append(took, time.Since(start)), append(waited, time.Since(submitted))
	}
	fmt.Printf("submit --wait (submit, then wait for the result), %d jobs one by one: p50 %v p99 %v; the wait alone p50 %v p99 %v\n",
		n, pct(took, 50), pct(took, 99), pct(waited, 50), pct(waited, 99))
	return nil
}

// measurePublish posts n messages one by one and times each from its
// commit (the message id's time, Redis's clock) and from its submission
// to its delivery to a subscriber.
func measurePublish(ctx context.Context, c *client.Client, room string, n int, every time.Duration) error {
	var mu sync.Mutex
	var fromCommit, fromSubmit []time.Duration
	done := make(chan struct{})
	live := make(chan struct{}, 1)
	sub := &client.Subscription{Topics: []string{"chat." + room}, Connected: func(string, int64) {
		select {
		case live <- struct{}{}:
		default:
		}
	}}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go c.Subscribe(sctx, sub, func(m client.Message) error {
		now := time.Now()
		var p struct {
			SentMs int64 `json:"sent_ms"`
		}
		json.Unmarshal(m.Data, &p)
		ms, _ := strconv.ParseInt(strings.SplitN(m.ID, "-", 2)[0], 10, 64)
		mu.Lock()
		fromCommit = append(fromCommit, now.Sub(time.UnixMilli(ms)))
		fromSubmit = append(fromSubmit, now.Sub(time.UnixMicro(p.SentMs)))
		if len(fromCommit) == n {
			close(done)
		}
		mu.Unlock()
		return nil
	})
	select {
	case <-live:
	case <-ctx.Done():
		return ctx.Err()
	}
	for i := range n {
		// sent_ms carries µs here, for a finer clock than the ids'.
		payload := fmt.Sprintf(`{"from":"bench","text":"post %d","sent_ms":%d}`, i, time.Now().UnixMicro())
		res, err := c.Submit(ctx, []*workerpb.Job{{Handler: "room.post", Key: room, Payload: []byte(payload)}})
		if err != nil || res[0].Error != "" {
			return fmt.Errorf("submit: %v %v", err, res)
		}
		time.Sleep(every)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("only %d of %d messages delivered", len(fromCommit), n)
	}
	fmt.Printf("publish: %d messages: commit→delivery p50 %v p99 %v (ms resolution: Redis stream ids); submit→delivery p50 %v p99 %v\n",
		n, pct(fromCommit, 50), pct(fromCommit, 99), pct(fromSubmit, 50), pct(fromSubmit, 99))
	return nil
}

// topicCost prints the topic's Redis memory per message and the commands
// per message since before.
func topicCost(ctx context.Context, rdb *redis.Client, topic string, n int, before map[string]int64) {
	after := commandCalls(ctx, rdb)
	var bytes int64
	streams := 0
	iter := rdb.Scan(ctx, 0, "corral:{p*}:topic:"+topic, 1000).Iterator()
	for iter.Next(ctx) {
		b, _ := rdb.MemoryUsage(ctx, iter.Val(), 0).Result()
		bytes += b
		streams++
	}
	fmt.Printf("topic %s: %d messages in %d partition streams, %d bytes of Redis (MEMORY USAGE), %.0f bytes per message\n",
		topic, n, streams, bytes, float64(bytes)/float64(n))
	var names []string
	for k := range after {
		if after[k] > before[k] {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var parts []string
	for _, k := range names {
		if d := after[k] - before[k]; float64(d)/float64(n) >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(d)/float64(n)))
		}
	}
	fmt.Printf("Redis commands per posted message while publishing (whole cluster, job path included): %s\n", strings.Join(parts, ", "))
}

// commandCalls reads INFO commandstats: calls per command.
func commandCalls(ctx context.Context, rdb *redis.Client) map[string]int64 {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		fmt.Fprintln(os.Stderr, "commandstats:", err)
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				out[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}
