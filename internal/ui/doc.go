// Package ui is the worker's dashboard: a few embedded pages at /ui/ and
// the JSON they poll (/ui/api/cluster, /ui/api/throughput, /ui/api/dead).
// It is served on the metrics listener, read-only, and reads the cluster
// through a Source the worker provides.
package ui
