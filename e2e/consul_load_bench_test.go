package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/hashicorp/consul/api"
)

// BenchmarkConsulWatchLoad registers N workers with a real Consul agent,
// each reporting its TTL check once a second with changing output (as a
// worker's job loop does), and counts how often one membership watcher's
// blocking query returns, and how big each answer is, with the agent's
// check_update_interval at 0s (the dev config) and at Consul's default.
//
//	go test -run XXX -bench ConsulWatchLoad -benchtime 1x ./e2e
func BenchmarkConsulWatchLoad(b *testing.B) {
	const workers, window = 30, 10 * time.Second
	for _, tc := range []struct{ name, hcl string }{
		{"update_interval_0s", `check_update_interval = "0s"`},
		{"update_interval_default", `check_update_interval = "5m"`},
	} {
		b.Run(fmt.Sprintf("%s_%dworkers", tc.name, workers), func(b *testing.B) {
			consul := testenv.StartConsul(b, testenv.ConsulOptions{HCL: []string{tc.hcl}})
			for b.Loop() {
				returns, bytes := watchLoad(b, consul.Addr, workers, window)
				b.ReportMetric(float64(returns)/window.Seconds(), "returns/s")
				b.ReportMetric(float64(bytes)/float64(max(returns, 1)), "B/answer")
			}
		})
	}
}

func watchLoad(b *testing.B, addr string, workers int, window time.Duration) (returns int, bytes int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var ready atomic.Int32
	for i := range workers {
		reg, err := discovery.NewConsul(discovery.ConsulConfig{Address: addr})
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("load-%d", i)
		if err := reg.Register(ctx, discovery.Registration{ID: id, Address: "127.0.0.1", Port: 7000 + i,
			Meta: map[string]string{"partitions": "64"}, CheckTTL: 3 * time.Second}); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer reg.Deregister(context.Background())
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for n := 0; ; n++ {
				out := fmt.Sprintf("lease ok; owns %d partitions; committed %d", 2, n*100)
				if err := reg.SetHealth(ctx, discovery.StatusPassing, out); err == nil && n == 0 {
					ready.Add(1)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	var wire atomic.Int64
	client, err := api.NewClient(&api.Config{Address: addr,
		HttpClient: &http.Client{Transport: countingTransport{next: http.DefaultTransport, n: &wire}}})
	if err != nil {
		b.Fatal(err)
	}
	// Wait until every instance passes, then count.
	var idx uint64
	testenv.Eventually(b, time.Minute, func() error {
		entries, meta, err := client.Health().Service(discovery.DefaultService, "", true, nil)
		if err != nil || len(entries) != workers {
			return fmt.Errorf("%d of %d instances pass (%v)", len(entries), workers, err)
		}
		idx = meta.LastIndex
		return nil
	})
	wire.Store(0)
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		qctx, qcancel := context.WithDeadline(ctx, end)
		q := (&api.QueryOptions{WaitIndex: idx, WaitTime: 30 * time.Second}).WithContext(qctx)
		_, meta, err := client.Health().Service(discovery.DefaultService, "", true, q)
		qcancel()
		if err != nil {
			break // the window ended mid-query
		}
		returns++
		idx = meta.LastIndex
	}
	bytes = wire.Load()
	cancel()
	wg.Wait()
	return returns, bytes
}

// countingTransport counts response body bytes, as they come off the wire.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		resp.Body = countingBody{ReadCloser: resp.Body, n: t.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
