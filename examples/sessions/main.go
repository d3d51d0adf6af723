// Command sessions-plugin is an example plugin of the two handler kinds
// that are not plain jobs:
//
// session.visit (key: session id) counts a session's page views. Its state
// expires after CORRAL_SESSION_TTL (a Go duration, default 30m) without a
// visit: sdk.StateTTL.
//
// cache.invalidate is a broadcast handler: coordinator broadcast runs it
// once on every worker of a group, with no state. It drops the entries of
// this process's cache whose key starts with the payload's prefix and
// replies how many it dropped. With CORRAL_BROADCAST_LOG set, it appends
// the broadcast's id to that file on each run (the tests count the runs);
// a payload's sleep_ms makes it take that long first.
package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/plugins/sdk"
)

type visit struct {
	Page string `json:"page"`
}

type session struct {
	Visits   int    `json:"visits"`
	LastPage string `json:"last_page"`
}

type invalidate struct {
	Prefix  string `json:"prefix"`
	SleepMs int    `json:"sleep_ms,omitempty"`
}

// cache stands for what a real plugin would keep in memory per process.
var cache = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{"price:apple": "1", "price:pear": "2", "stock:apple": "7"}}

func main() {
	ttl := 30 * time.Minute
	if s := os.Getenv("CORRAL_SESSION_TTL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "CORRAL_SESSION_TTL=%q: want a positive duration\n", s)
			os.Exit(2)
		}
		ttl = d
	}
	sdk.New("sessions", "0.1.0",
		sdk.Handler("session.visit", sdk.Typed(visitHandler), sdk.StateTTL(ttl), sdk.ShapeOf[visit]()),
		sdk.Handler("cache.invalidate", invalidateHandler, sdk.Broadcast(), sdk.ShapeOf[invalidate]()),
	).Serve()
}

func visitHandler(_ *sdk.Call, v visit, s session) (session, error) {
	s.Visits++
	s.LastPage = v.Page
	return s, nil
}

func invalidateHandler(c *sdk.Call) error {
	var in invalidate
	if err := c.Decode(&in); err != nil {
		return err
	}
	if in.SleepMs > 0 {
		select {
		case <-time.After(time.Duration(in.SleepMs) * time.Millisecond):
		case <-c.Context().Done():
			return c.Context().Err()
		}
	}
	if path := os.Getenv("CORRAL_BROADCAST_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(f, c.ID())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	cache.Lock()
	n := 0
	for k := range cache.m {
		if strings.HasPrefix(k, in.Prefix) {
			delete(cache.m, k)
			n++
		}
	}
	cache.Unlock()
	return c.SetResult(map[string]int{"dropped": n})
}
