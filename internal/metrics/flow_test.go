package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFlowInForce: the flow settings a worker applies show one series per
// control in force, none for a handler without controls, and pass the
// linter.
func TestFlowInForce(t *testing.T) {
	reg := prometheus.NewRegistry()
	applied := []FlowInForce{
		{Handler: "mail.send", Paused: true, Rate: 2.5},
		{Handler: "stock.reserve", Concurrency: 4},
		{Handler: "idle.none"},
	}
	NewFlow(reg, func() []FlowInForce { return applied })
	want := `
# HELP corral_flow_in_force Flow controls this worker applies now, per handler: control paused (1), concurrency (the limit) or rate (jobs/s). A handler with none has no series.
# TYPE corral_flow_in_force gauge
corral_flow_in_force{control="paused",handler="mail.send"} 1
corral_flow_in_force{control="rate",handler="mail.send"} 2.5
corral_flow_in_force{control="concurrency",handler="stock.reserve"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "corral_flow_in_force"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	applied = nil
	if n, err := testutil.GatherAndCount(reg, "corral_flow_in_force"); err != nil || n != 0 {
		t.Fatalf("%d series with nothing in force (%v)", n, err)
	}
}
