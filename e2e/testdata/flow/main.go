// Command flow-plugin is the plugin of the e2e tests of flow control. Its
// handlers measure themselves in the Redis that FLOWTEST_REDIS names:
//
//   - slow.run sleeps the payload's ms and counts the calls in flight
//     across every plugin process (flowtest:inflight, its peak the score
//     of member "peak" of flowtest:peak); each call is also kept as a
//     span: while it runs, field "<job id> <pid> <start ms>" of flowtest:open
//     holds "<start ms> <worker pid>"; when it ends, "<job id> <start ms>
//     <end ms>" is pushed to flowtest:spans (a call whose process is
//     killed stays open);
//   - fast.run and tick.run record the unix ms they ran at
//     (flowtest:ran:HANDLER);
//   - seq.apply keeps, per key, the last sequence number applied and the
//     count, and marks the key in flowtest:bad when a number comes out of
//     order or twice.
package main

import (
	"context"
	"os"
	"strconv"
	"time"

	"github.com/corralhq/corral/plugins/sdk"
	"github.com/redis/go-redis/v9"
)

var rdb = redis.NewClient(&redis.Options{Addr: os.Getenv("FLOWTEST_REDIS")})

// Slow is the payload of slow.run.
type Slow struct {
	Ms int `json:"ms"`
}

// Seq is the payload of seq.apply.
type Seq struct {
	N int `json:"n"`
}

// Applied is the state of a seq.apply key.
type Applied struct {
	Last  int `json:"last"`
	Count int `json:"count"`
}

func main() {
	sdk.New("flowtest", "0.1.0",
		sdk.Handler("slow.run", sdk.Typed(slow), sdk.Timeout(30*time.Second)),
		sdk.Handler("fast.run", sdk.Typed(ran), sdk.Entity("fast")),
		sdk.Handler("tick.run", sdk.Typed(ran), sdk.Entity("tick")),
		sdk.Handler("seq.apply", sdk.Typed(apply)),
	).Serve()
}

func slow(c *sdk.Call, p Slow, s struct{}) (struct{}, error) {
	ctx := context.Background()
	start := time.Now().UnixMilli()
	call := c.ID() + " " + strconv.Itoa(os.Getpid()) + " " + strconv.FormatInt(start, 10)
	if err := rdb.HSet(ctx, "flowtest:open", call, strconv.FormatInt(start, 10)+" "+strconv.Itoa(os.Getppid())).Err(); err != nil {
		return s, err
	}
	defer func() {
		end := time.Now().UnixMilli()
		rdb.HDel(ctx, "flowtest:open", call)
		rdb.RPush(ctx, "flowtest:spans", c.ID()+" "+strconv.FormatInt(start, 10)+" "+strconv.FormatInt(end, 10))
	}()
	n, err := rdb.Incr(ctx, "flowtest:inflight").Result()
	if err != nil {
		return s, err
	}
	// The peak is the score of one member, raised only (GT).
	if err := rdb.ZAddArgs(ctx, "flowtest:peak", redis.ZAddArgs{GT: true, Members: []redis.Z{{Score: float64(n), Member: "peak"}}}).Err(); err != nil {
		return s, err
	}
	time.Sleep(time.Duration(p.Ms) * time.Millisecond)
	rdb.Decr(ctx, "flowtest:inflight")
	return s, rdb.RPush(ctx, "flowtest:ran:slow.run", time.Now().UnixMilli()).Err()
}

func ran(c *sdk.Call, _ struct{}, s struct{}) (struct{}, error) {
	return s, rdb.RPush(context.Background(), "flowtest:ran:"+c.Handler(), time.Now().UnixMilli()).Err()
}

func apply(c *sdk.Call, p Seq, s Applied) (Applied, error) {
	if p.N != s.Last+1 {
		rdb.SAdd(context.Background(), "flowtest:bad", c.Key()+" got "+strconv.Itoa(p.N)+" after "+strconv.Itoa(s.Last))
	}
	s.Last, s.Count = p.N, s.Count+1
	return s, nil
}
