// Package metrics holds the worker's Prometheus collectors and the HTTP
// server that exposes them on /metrics.
package metrics

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
)
