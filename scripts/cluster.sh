#!/usr/bin/env bash
# A local Corral cluster in the background: a Consul dev agent (UI at
# http://127.0.0.1:8500/ui), Redis with AOF on, and N workers running the
# donations plugin. Everything lives under $CORRAL_STATE (default .corral/).
#
#   scripts/cluster.sh up            start it (idempotent)
#   scripts/cluster.sh down          stop it and delete its state
#   scripts/cluster.sh workers N     start N workers (up starts $CORRAL_WORKERS)
#   scripts/cluster.sh stop-workers  SIGTERM every worker
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

log() { echo "cluster: $*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "timed out after ${secs}s waiting for $what; logs in $CORRAL_STATE/logs"
  return 1
}

start_consul() {
  alive "$CORRAL_STATE/consul.pid" && return
  [ -n "$CONSUL" ] || { log "no consul: run 'make deps'"; exit 1; }
  # Every port follows the HTTP port, so a second cluster (make bench) can
  # run beside the first.
  local base=$((CORRAL_CONSUL_PORT - 200))
  "$CONSUL" agent -dev -config-file deploy/consul/dev.hcl -http-port "$CORRAL_CONSUL_PORT" \
    -server-port "$base" -serf-lan-port $((base + 1)) -serf-wan-port $((base + 2)) -dns-port -1 -grpc-port -1 \
    >"$CORRAL_STATE/logs/consul.log" 2>&1 &
  echo $! >"$CORRAL_STATE/consul.pid"
  wait_for 30 "a Consul leader" "$CONSUL" kv put -http-addr="$CORRAL_CONSUL_ADDR" corral/ready 1
  log "consul agent up: UI at http://$CORRAL_CONSUL_ADDR/ui"
}

start_redis() {
  alive "$CORRAL_STATE/redis.pid" && return
  mkdir -p "$CORRAL_STATE/redis"
  redis-server --port "$CORRAL_REDIS_PORT" --bind 127.0.0.1 --dir "$CORRAL_STATE/redis" \
    --appendonly yes --appendfsync everysec --save "" \
    --auto-aof-rewrite-min-size "${CORRAL_REDIS_AOF_REWRITE_MIN:-1gb}" \
    >"$CORRAL_STATE/logs/redis.log" 2>&1 &
  echo $! >"$CORRAL_STATE/redis.pid"
  wait_for 10 "redis" redis-cli -p "$CORRAL_REDIS_PORT" ping
  log "redis up on $CORRAL_REDIS_ADDR (AOF on, fsync every second, rewritten from ${CORRAL_REDIS_AOF_REWRITE_MIN:-1gb}; data in $CORRAL_STATE/redis)"
}

# TLS: workers serve mutual TLS with certificates made once under
# $CORRAL_STATE/tls (a throwaway CA, a peer certificate per worker, and
# admin/submit/read client certificates), where bin/coordinator finds the
# admin one by default. CORRAL_TLS=off runs the workers in plaintext.
export CORRAL_STATE
worker_tls=()
worker_certs() { # worker_certs ID: make what is missing, set worker_tls to the flags
  worker_tls=()
  [ "${CORRAL_TLS:-on}" = off ] && return
  local dir="$CORRAL_STATE/tls"
  [ -f "$dir/ca.pem" ] || bin/coordinator certs init --dir "$dir" >/dev/null
  [ -f "$dir/$1.pem" ] || bin/coordinator certs issue --dir "$dir" --role peer --name "$1" >/dev/null
  worker_tls=(--tls-cert "$dir/$1.pem" --tls-key "$dir/$1-key.pem" --tls-ca "$dir/ca.pem")
}

start_workers() {
  local n=$1 started=0
  for i in $(seq 1 "$n"); do
    local pid="$CORRAL_STATE/worker-$i.pid"
    alive "$pid" && continue
    worker_certs "worker-$i"
    bin/worker --id "worker-$i" --listen "127.0.0.1:$((CORRAL_WORKER_PORT + i))" --plugin bin/donations-plugin \
      "${worker_tls[@]}" ${CORRAL_WORKER_FLAGS:-} >"$CORRAL_STATE/logs/worker-$i.log" 2>&1 &
    echo $! >"$pid"
    started=$((started + 1))
  done
  wait_for 30 "$n healthy workers" healthy "$n"
  [ "$started" = 0 ] || log "$started worker(s) up; logs in $CORRAL_STATE/logs"
}

healthy() {
  [ "$(bin/coordinator status 2>/dev/null | grep -c '^worker-')" -ge "$1" ]
}

stop_pidfile() { # stop_pidfile FILE SIGNAL
  local f=$1
  if alive "$f"; then
    local pid; pid=$(cat "$f")
    kill "-$2" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_workers() {
  shopt -s nullglob
  for f in "$CORRAL_STATE"/worker-*.pid; do stop_pidfile "$f" TERM; done
}

case "${1:-}" in
  up)
    mkdir -p "$CORRAL_STATE/logs"
    start_consul
    start_redis
    start_workers "$CORRAL_WORKERS"
    ;;
  workers)
    mkdir -p "$CORRAL_STATE/logs"
    start_workers "${2:?number of workers}"
    ;;
  services)
    mkdir -p "$CORRAL_STATE/logs"
    start_consul
    start_redis
    ;;
  stop-workers)
    stop_workers
    ;;
  down)
    [ -d "$CORRAL_STATE" ] || { log "nothing running"; exit 0; }
    stop_workers
    stop_pidfile "$CORRAL_STATE/redis.pid" TERM
    stop_pidfile "$CORRAL_STATE/consul.pid" INT
    rm -rf "$CORRAL_STATE"
    log "stopped; state removed"
    ;;
  *)
    echo "usage: scripts/cluster.sh up|down|services|workers N|stop-workers" >&2
    exit 2
    ;;
esac
