package metrics_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/metrics"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// exported is every metric name a worker's /metrics can show, with the
// _bucket, _sum and _count series of histograms: a worker with every
// source set, each labelled collector touched once.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.NewWorker("w1", metrics.Source{
		Fenced: func() int64 { return 0 }, Moves: func() int64 { return 0 }, PartitionsOwned: func() int { return 0 },
		Backlog:        func(context.Context) (metrics.Backlog, error) { return metrics.Backlog{}, nil },
		LeaseRemaining: func() time.Duration { return time.Second },
		Breakers:       func() []metrics.PeerBreaker { return []metrics.PeerBreaker{{Peer: "p"}} },
		PluginRestarts: func() int64 { return 0 },
	})
	f := metrics.NewFlow(m.Registry(), func() []metrics.FlowInForce { return []metrics.FlowInForce{{Handler: "h", Paused: true}} })
	f.Waited("h", "paused", 1)
	f.Slots("h", 1)
	m.Committed("h", 1)
	m.Retried("h", 1)
	m.DeadLettered("h", 1)
	m.Rejected("h", 1)
	m.Cancelled("h", 1)
	m.Failed("h", 1)
	m.BroadcastRun("h", "ran")
	m.DeadDropped("age", 1)
	m.ObserveSubmitToCommit("h", time.Second)
	m.ObserveCall("direct", time.Second)
	m.ObserveCommit(time.Second)
	m.ObserveHandlerCall(time.Second)
	m.TicksFired("s", 1)
	m.TicksMissed("s", 1)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[mf.GetName()+s] = true
			}
		}
	}
	return out
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// metricNames are the metric names a PromQL expression selects: what is
// left once strings, label matchers, ranges, groupings, function calls
// and keywords are taken out. A stand-in for PromQL's parser, which comes
// with too large a module for this check (docs/operations.md).
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	depth := map[rune]int{}
	for _, r := range promqlStrings.ReplaceAllString(expr, `""`) {
		switch r {
		case '(', '{', '[':
			depth[r]++
		case ')':
			depth['(']--
		case '}':
			depth['{']--
		case ']':
			depth['[']--
		}
	}
	for r, d := range depth {
		if d != 0 {
			t.Errorf("%q: unbalanced %c", expr, r)
		}
	}
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, m := range promqlIdent.FindAllStringSubmatch(s, -1) {
		if m[1] != "" || slices.Contains(promqlKeywords, strings.ToLower(m[0])) {
			continue // a function or aggregation, or a keyword
		}
		out = append(out, m[0])
	}
	return out
}

func TestMetricNamesOfPromQL(t *testing.T) {
	got := metricNames(t, `histogram_quantile(0.99, sum by (handler, le) (rate(corral_call_seconds_bucket{handler=~"$h"}[$__rate_interval]))) > 0 and on (instance) corral_worker_info`)
	if !slices.Equal(got, []string{"corral_call_seconds_bucket", "corral_worker_info"}) {
		t.Fatalf("names: %v", got)
	}
}

// checkExpr fails unless expr names at least one metric and only ones a
// worker exports.
func checkExpr(t *testing.T, where, expr string, known map[string]bool) {
	t.Helper()
	names := metricNames(t, expr)
	if len(names) == 0 {
		t.Errorf("%s: %q names no metric", where, expr)
	}
	for _, n := range names {
		if !known[n] {
			t.Errorf("%s: %q uses %s, which the worker does not export", where, expr, n)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile("../../deploy/grafana/corral.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana/corral.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Fatalf("the dashboard needs a title and a uid")
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, known)
			exprs++
		}
	}
	for _, v := range dash.Templating.List {
		if strings.HasPrefix(v.Definition, "label_values(") {
			metric, _, _ := strings.Cut(strings.TrimPrefix(v.Definition, "label_values("), ",")
			if !known[strings.TrimSpace(metric)] {
				t.Errorf("variable %s reads %s, which the worker does not export", v.Name, metric)
			}
		}
	}
	t.Logf("%d panels, %d queries checked against %d exported series names", len(dash.Panels), exprs, len(known))
}

func TestAlertRules(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	// The rule file's structure, as Prometheus's rulefmt reads it.
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	if len(file.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	var alerts []string
	for _, g := range file.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || r.Record != "" {
				t.Errorf("%s: every rule here is an alert with a name", where)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a severity label, a summary and a description", where)
			}
			checkExpr(t, where, r.Expr, known)
			alerts = append(alerts, r.Alert)
		}
	}
	// The conditions operations must hear about.
	for _, want := range []string{"CorralLeaseLost", "CorralFencedCommits", "CorralDeadLettersGrowing", "CorralQueueLagGrowing", "CorralPluginRestarting"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}

var update = flag.Bool("update", false, "rewrite deploy/prometheus/metrics.txt")

// deploy/prometheus/metrics.txt lists the exported series names, for the
// rule checks of deploy/prometheus/rulecheck (a module of its own) and for
// people writing queries.
func TestExportedNamesFile(t *testing.T) {
	const file = "../../deploy/prometheus/metrics.txt"
	var names []string
	for n := range exported(t) {
		names = append(names, n)
	}
	slices.Sort(names)
	want := "# Series names a Corral worker's /metrics exports (go test ./internal/metrics -run ExportedNames -update rewrites it).\n" +
		strings.Join(names, "\n") + "\n"
	if *update {
		if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil || string(got) != want {
		t.Fatalf("%s is out of date (%v): go test ./internal/metrics -run ExportedNames -update", file, err)
	}
}
