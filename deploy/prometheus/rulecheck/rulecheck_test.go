package rulecheck

import (
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func exported(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out[l] = true
		}
	}
	return out
}

// check parses expr and fails unless every series it selects is one a
// worker exports.
func check(t *testing.T, p parser.Parser, where, expr string, known map[string]bool) {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return
	}
	n := 0
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			n++
			if !known[vs.Name] {
				t.Errorf("%s: %q selects %s, which the worker does not export", where, expr, vs.Name)
			}
		}
		return nil
	})
	if n == 0 {
		t.Errorf("%s: %q selects no series", where, expr)
	}
}

func TestAlerts(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile("../alerts.yml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		return
	}
	known := exported(t)
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			check(t, p, "alert "+r.Alert, r.Expr, known)
			n++
		}
	}
	t.Logf("%d rules parsed by rulefmt, their expressions by the PromQL parser", n)
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../../grafana/corral.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	// Grafana's variables, as Grafana would fill them in.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$handler", ".*")
	p := parser.NewParser(parser.Options{})
	known := exported(t)
	n := 0
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			check(t, p, "panel "+panel.Title, vars.Replace(tg.Expr), known)
			n++
		}
	}
	t.Logf("%d dashboard queries parsed", n)
}
