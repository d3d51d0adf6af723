// Command loadgen writes a reproducible donations workload as JSON lines
// for `coordinator submit --file`, and the totals it must produce for
// `verify`.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/corralhq/corral/examples/donations/workload"
)

func main() {
	var s workload.Spec
	flag.Uint64Var(&s.Seed, "seed", 1, "random seed; the same seed gives the same jobs and ids")
	flag.IntVar(&s.Donations, "n", 10000, "number of donations")
	flag.IntVar(&s.Donors, "donors", 1000, "number of distinct donors")
	flag.IntVar(&s.Campaigns, "campaigns", 20, "number of distinct campaigns")
	out := flag.String("out", "donations.jsonl", "jobs file to write")
	expected := flag.String("expected", "expected.json", "expected totals file to write")
	flag.Parse()
	if s.Donations < 1 || s.Donors < 1 || s.Campaigns < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -n, -donors and -campaigns must be at least 1")
		os.Exit(2)
	}
	if err := write(s, *out, *expected); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func write(s workload.Spec, out, expected string) error {
	jobs, exp := workload.Generate(s)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, j := range jobs {
		line := struct {
			ID      string          `json:"id"`
			Handler string          `json:"handler"`
			Key     string          `json:"key"`
			Payload json.RawMessage `json:"payload"`
		}{j.Id, j.Handler, j.Key, j.Payload}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(exp, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(expected, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %d donations (%d donors, %d campaigns) to %s, totals to %s\n", len(jobs), len(exp.Donors), len(exp.Campaigns), out, expected)
	return nil
}
