#!/usr/bin/env bash
# Burn-down benchmark on a fresh local cluster of its own (other ports and
# state than `make up`): Consul and Redis first, donations pre-loaded, then
# three workers started and timed until the queues drain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CORRAL_STATE=$PWD/.corral-bench CORRAL_REDIS_PORT=6391 CORRAL_CONSUL_PORT=8510 CORRAL_WORKER_PORT=7200
export CORRAL_PLUGINS=$PWD/bin/donations-plugin CORRAL_BIN=$PWD/bin
. scripts/env.sh
trap 'scripts/cluster.sh down >/dev/null' EXIT
scripts/cluster.sh down >/dev/null
scripts/cluster.sh services
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3)"
# The burn-down, then latency at half its rate (BENCH_FLAGS="-load 0.8"
# changes the share), then the totals checked.
bin/bench -n "${BENCH_DONATIONS:-300000}" -start "scripts/cluster.sh workers 3" ${BENCH_FLAGS:-}
# Calls on an idle cluster: every queue empty first.
bin/bench -wait-drained
bin/callbench -n "${BENCH_CALLS:-2000}"
# Ingest: `coordinator submit --file` of loadgen donations into the bench
# cluster while its three workers drain them as they come (timed from the
# command's start to its exit, Consul lookup and file reading included).
ingest_n=${BENCH_INGEST:-200000}
bin/loadgen -n "$ingest_n" -seed "$(date +%s)" \
  -out "$CORRAL_STATE/ingest.jsonl" -expected "$CORRAL_STATE/ingest-expected.json" >/dev/null
ingest_start=$(date +%s.%N)
bin/coordinator submit --quiet --file "$CORRAL_STATE/ingest.jsonl" >/dev/null
ingest_end=$(date +%s.%N)
awk -v n="$ingest_n" -v s="$ingest_start" -v e="$ingest_end" \
  'BEGIN { printf "submit --file ingest: %d jobs in %.2fs: %.0f jobs/s\n", n, e - s, n / (e - s) }'
# The machine's speed again: a figure far from the first one means the
# machine was busy with something else during the run.
bin/bench -speed
