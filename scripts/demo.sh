#!/usr/bin/env bash
# The main job: a local cluster with the donations plugin, a load of
# donations submitted through the coordinator, every total verified.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
N=${DEMO_DONATIONS:-20000}
# The demo's jobs need the donations plugin (make demo PLUGINS=... adds others).
export CORRAL_PLUGINS=${CORRAL_PLUGINS:-bin/donations-plugin}

scripts/cluster.sh up
work="$CORRAL_STATE/demo"
mkdir -p "$work"
bin/loadgen -n "$N" -donors 2000 -campaigns 25 -seed "${DEMO_SEED:-$(date +%s)}" \
  -out "$work/donations.jsonl" -expected "$work/expected.json"

echo
echo "== submit: bin/coordinator submit --file $work/donations.jsonl"
start=$(date +%s.%N)
bin/coordinator submit --quiet --file "$work/donations.jsonl"
echo
echo "== verify: every donor total, zakat share and campaign total"
bin/verify --expected "$work/expected.json" --wait 3m
end=$(date +%s.%N)
echo
echo "== one donor, through the CLI"
key=$(head -1 "$work/donations.jsonl" | sed 's/.*"key":"\([^"]*\)".*/\1/')
echo "\$ bin/coordinator state donor $key"
bin/coordinator state donor "$key"
echo
echo "== cluster"
bin/coordinator status
echo
awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN { printf "demo: %d donations submitted, processed and verified in %.1fs (%.0f donations/s end to end)\n", n, e - s, n / (e - s) }'
echo "demo: the cluster keeps running: Consul UI at http://$CORRAL_CONSUL_ADDR/ui; 'make down' stops it"
# Each worker publishes its dashboard in its Consul service meta "ui".
ui=$(curl -fsS "http://$CORRAL_CONSUL_ADDR/v1/health/service/corral-worker?passing" 2>/dev/null |
  grep -o '"ui": *"[^"]*"' | head -1 | sed 's/"ui": *"\(.*\)"/\1/' || true)
[ -n "$ui" ] || ui='(see the "ui" meta of a corral-worker service in Consul)'
echo "demo: dashboard (partition map, throughput, dead letters) at $ui"
# A picture of the dashboard, when a headless Chromium is at hand (make deps
# installs it): the page as it is a few seconds after the demo.
chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chrome" ] && [[ "$ui" == http* ]]; then
  shot="$CORRAL_STATE/dashboard.png"
  if timeout 60 "$chrome" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
      --window-size=1400,1100 --virtual-time-budget=8000 --screenshot="$shot" "$ui" >/dev/null 2>&1; then
    echo "demo: dashboard screenshot at $shot"
  fi
fi
