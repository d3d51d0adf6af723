package main

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/corralhq/corral/api/workerpb"
)

// coordinator reshard's output in each state, as people and scripts read it.
func TestPrintReshard(t *testing.T) {
	cases := []struct {
		r     *workerpb.ReshardResponse
		table string
		state string
	}{
		{&workerpb.ReshardResponse{Partitions: 64}, "64 partitions; never resharded", "none"},
		{&workerpb.ReshardResponse{Partitions: 64, To: 256, Split: 20, LongestPauseMs: 31}, "reshard 64 → 256 under way: 20 of 64 partitions split, longest pause so far 31 ms", "under way"},
		{&workerpb.ReshardResponse{Partitions: 256, Previous: 64, LongestPauseMs: 54, StartedMs: 1000, EndedMs: 1500}, "256 partitions (resharded from 64 in 500ms); longest pause of a partition: 54 ms", "done"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		if err := printReshard(&b, &output{format: outputTable}, c.r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(b.String(), c.table) {
			t.Errorf("table %q, want it to start with %q", b.String(), c.table)
		}
		b.Reset()
		if err := printReshard(&b, &output{format: outputJSON}, c.r); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		var got []string
		for k := range m {
			got = append(got, k)
		}
		sort.Strings(got)
		wantKeys(t, "reshard", got, "partitions", "to", "split", "previous", "state", "longest_pause_ms", "started_ms", "ended_ms")
		if m["state"] != c.state {
			t.Errorf("state %v, want %q", m["state"], c.state)
		}
	}
}
