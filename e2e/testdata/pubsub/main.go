// Command pubsub-plugin is the plugin of the e2e tests of publish and
// subscribe:
//
//   - seq.publish keeps a count per key and publishes {key, n, count} to
//     topic "seq" for every job: n is the job's place in its key's
//     submissions, count how many of the key's jobs committed before it;
//   - tally.count subscribes to topic "seq": it counts the messages, per
//     key the last n, and marks itself bad when one comes out of order or
//     twice;
//   - flaky.publish publishes {id, attempt} to topic "flaky" on every
//     attempt, and asks for a retry on the first, so only the second
//     attempt's message may ever reach a subscriber.
package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/plugins/sdk"
)

// Seq is the payload of seq.publish.
type Seq struct {
	N int `json:"n"`
}

// Count is the state of a seq.publish key.
type Count struct {
	Count int `json:"count"`
}

// Published is what seq.publish publishes.
type Published struct {
	Key   string `json:"key"`
	N     int    `json:"n"`
	Count int    `json:"count"`
}

// Attempted is what flaky.publish publishes.
type Attempted struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
}

func main() {
	sdk.New("pubsubtest", "0.1.0",
		sdk.Handler("seq.publish", sdk.Typed(publish)),
		sdk.Handler("flaky.publish", flaky),
		sdk.Handler("tally.count", sdk.Typed(tally), sdk.Subscribe("seq"), sdk.Internal()),
	).Serve()
}

func publish(c *sdk.Call, p Seq, s Count) (Count, error) {
	if err := c.Publish("seq", Published{Key: c.Key(), N: p.N, Count: s.Count}); err != nil {
		return s, err
	}
	s.Count++
	return s, nil
}

func flaky(c *sdk.Call) error {
	if err := c.Publish("flaky", Attempted{ID: c.ID(), Attempt: c.Attempt()}); err != nil {
		return err
	}
	if c.Attempt() == 1 {
		return sdk.RetryAfter(errors.New("first attempts always fail"), 10*time.Millisecond)
	}
	return nil
}

// Tally is the state of tally.count.
type Tally struct {
	Count int            `json:"count"`
	Last  map[string]int `json:"last"`
	Bad   string         `json:"bad,omitempty"`
}

func tally(c *sdk.Call, m Published, s Tally) (Tally, error) {
	if s.Last == nil {
		s.Last = map[string]int{}
	}
	if last, ok := s.Last[m.Key]; (ok && m.N != last+1) || (!ok && m.N != 0) {
		if s.Bad == "" {
			s.Bad = fmt.Sprintf("key %s: message %d after %d (job %s)", m.Key, m.N, last, c.ID())
		}
	}
	s.Last[m.Key] = m.N
	s.Count++
	return s, nil
}
