#!/usr/bin/env bash
# The price of mutual TLS on a Call: one Redis and Consul, three workers
# started with TLS and then without, in turns, and bin/callbench against
# each (straight to the owner, and through another worker: one peer hop).
# Rounds alternate so both modes see the same machine; the summary is the
# median of the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CORRAL_STATE=$PWD/.corral-bench-tls CORRAL_REDIS_PORT=6392 CORRAL_CONSUL_PORT=8520 CORRAL_WORKER_PORT=7300
. scripts/env.sh
trap 'scripts/cluster.sh down >/dev/null' EXIT
scripts/cluster.sh down >/dev/null
scripts/cluster.sh services >/dev/null
out="$CORRAL_STATE/callbench.txt"
: >"$out"
settled() { bin/coordinator status 2>/dev/null | grep -q "(64 owned)"; }
echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3); ${BENCH_ROUNDS:-3} rounds of ${BENCH_CALLS:-2000} calls per case and mode"
for round in $(seq "${BENCH_ROUNDS:-3}"); do
  for mode in on off; do
    export CORRAL_TLS=$mode
    scripts/cluster.sh workers 3 >/dev/null
    for _ in $(seq 300); do settled && break; sleep 0.1; done
    bin/callbench -n "${BENCH_CALLS:-2000}" | grep '^call latency' | sed "s/^/tls=$mode /" | tee -a "$out"
    scripts/cluster.sh stop-workers
  done
done
unset CORRAL_TLS
echo
echo "median of the rounds (ms):"
awk '
  { mode = $1; sub(/^tls=/, "", mode); hop = ($0 ~ /peer hop/) ? "one peer hop" : "to the owner"
    for (i = 1; i <= NF; i++) { if ($i == "p50") p50[mode, hop] = p50[mode, hop] " " $(i+1); if ($i == "p99") p99[mode, hop] = p99[mode, hop] " " $(i+1) } }
  function median(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
  END {
    printf "  %-14s %10s %10s %10s %10s\n", "case", "p50 TLS", "p50 plain", "p99 TLS", "p99 plain"
    split("to the owner,one peer hop", hops, ",")
    for (h = 1; h <= 2; h++) printf "  %-14s %10s %10s %10s %10s\n", hops[h], median(p50["on", hops[h]]), median(p50["off", hops[h]]), median(p99["on", hops[h]]), median(p99["off", hops[h]])
  }' "$out"
