// Package metrics holds the worker's Prometheus collectors and the HTTP
// server that exposes them on /metrics.
//
// Counters the worker already keeps (fenced commits, partition moves) and
// gauges it can compute (partitions owned, queue lag, lease time left,
// breaker states) are read at scrape time through Source, so the job path
// pays nothing for them. Per-handler counters and latency histograms are fed
// by the worker after each batch.
package metrics
