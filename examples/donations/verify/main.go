// Command verify checks a cluster's committed donor and campaign totals
// against the expected totals written by loadgen, waiting for the queues to
// drain first.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/cli"
)

// tlsFlags: the client certificate (default: the local cluster's admin one).
var tlsFlags cli.TLSFlags

func main() {
	consul := flag.String("consul", cli.DefaultConsulAddr(), "Consul agent HTTP address (env CORRAL_CONSUL_ADDR)")
	expected := flag.String("expected", "expected.json", "expected totals written by loadgen")
	wait := flag.Duration("wait", 2*time.Minute, "how long to wait for the totals to match")
	tlsFlags.Register(flag.CommandLine, "dial the workers in plaintext (or CORRAL_TLS=off)")
	flag.Parse()
	if err := run(*consul, *expected, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		os.Exit(1)
	}
}

func run(consul, path string, wait time.Duration) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var exp workload.Expected
	if err := json.Unmarshal(b, &exp); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tlsCfg, _, err := tlsFlags.ClientConfig()
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{ConsulAddr: consul, TLS: tlsCfg})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	rep, err := workload.WaitFor(ctx, c, exp)
	if err != nil {
		return err
	}
	fmt.Printf("%s (after %.1fs)\n", rep, time.Since(start).Seconds())
	if !rep.OK() {
		return fmt.Errorf("totals do not match")
	}
	return nil
}
