// Command callbench measures synchronous Call latency on a running
// cluster: calls sent to a worker that does not own the key (one peer hop
// to the owner) and calls sent straight to the owner. It prints figures;
// it asserts none.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/breaker"
	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/peer"
	"github.com/corralhq/corral/sharding"
	"google.golang.org/grpc/credentials"
)

// tlsFlags: the client certificate (default: the local cluster's admin one).
var tlsFlags cli.TLSFlags

func main() {
	consul := flag.String("consul", cli.DefaultConsulAddr(), "Consul address (env CORRAL_CONSUL_ADDR)")
	n := flag.Int("n", 2000, "calls per case")
	tlsFlags.Register(flag.CommandLine, "dial the workers in plaintext (or CORRAL_TLS=off)")
	flag.Parse()
	if err := run(*consul, *n); err != nil {
		fmt.Fprintln(os.Stderr, "callbench:", err)
		os.Exit(1)
	}
}

func run(consul string, n int) error {
	ctx := context.Background()
	tlsCfg, from, err := tlsFlags.ClientConfig()
	if err != nil {
		return err
	}
	cl, err := client.New(client.Config{ConsulAddr: consul, TLS: tlsCfg})
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	owner := map[int]string{}
	addr := map[string]string{}
	for _, m := range st.Members {
		addr[m.Id] = m.Address
		for _, p := range m.Partitions {
			owner[int(p.Partition)] = m.Id
		}
	}
	if len(addr) < 2 {
		return fmt.Errorf("need at least two workers, found %d", len(addr))
	}
	var opts []peer.Option
	transport := "plaintext"
	if tlsCfg != nil {
		opts = append(opts, peer.WithCredentials(credentials.NewTLS(tlsCfg)))
		transport = "mutual TLS, " + from
	}
	fmt.Printf("calls over %s\n", transport)
	pool, err := peer.NewPool(breaker.DefaultConfig(), nil, opts...)
	if err != nil {
		return err
	}
	defer pool.Close()

	measure := func(hop bool) ([]time.Duration, error) {
		lat := make([]time.Duration, 0, n)
		for i := 0; len(lat) < n; i++ {
			key := fmt.Sprintf("callbench-%d", i%500)
			own := owner[sharding.PartitionOf(key, int(st.Partitions))]
			entry := own
			if hop {
				for id := range addr {
					if id != own {
						entry = id
						break
					}
				}
			}
			payload, _ := json.Marshal(ledger.Donation{AmountCents: 100, Campaign: "callbench"})
			job := &workerpb.Job{Id: client.NewJobID(), Handler: ledger.HandlerDonate, Key: key, Payload: payload}
			start := time.Now()
			err := pool.Call(ctx, addr[entry], func(ctx context.Context, w workerpb.WorkerClient) error {
				_, err := w.Call(ctx, &workerpb.CallRequest{Job: job, TimeoutMs: 2000})
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("call via %s: %w", entry, err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat, nil
	}
	// Warm connections and plugin processes first.
	if _, err := measure(true); err != nil {
		return err
	}
	for _, hop := range []bool{false, true} {
		lat, err := measure(hop)
		if err != nil {
			return err
		}
		what := "straight to the owner"
		if hop {
			what = "via another worker (one peer hop)"
		}
		fmt.Printf("call latency %-34s n=%d  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms\n", what, len(lat),
			ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
