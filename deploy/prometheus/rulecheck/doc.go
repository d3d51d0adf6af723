// Package rulecheck holds only a test: it checks deploy/prometheus/alerts.yml
// with Prometheus's own rule parser (model/rulefmt) and every PromQL query
// of the alerts and of deploy/grafana/corral.json with its PromQL parser,
// against the series names in deploy/prometheus/metrics.txt. It is a
// module of its own so that Prometheus's dependencies stay out of
// Corral's go.mod: run it with "make check-deploy" or
// "cd deploy/prometheus/rulecheck && go test ./...".
package rulecheck
