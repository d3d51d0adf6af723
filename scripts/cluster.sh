#!/usr/bin/env bash
# A local Corral cluster in the background: a Consul dev agent (UI at
# http://127.0.0.1:8500/ui), Redis with AOF on, and N workers running the
# handler plugins of $CORRAL_PLUGINS (default: the donations example).
# Everything lives under $CORRAL_STATE (default .corral/).
#
#   scripts/cluster.sh up            start it (idempotent: what already runs from
#                                    this $CORRAL_STATE is kept)
#   scripts/cluster.sh down          stop it and delete its state
#   scripts/cluster.sh services      start Consul and Redis only
#   scripts/cluster.sh workers N     start workers 1..N that are not running
#                                    (up starts $CORRAL_WORKERS)
#   scripts/cluster.sh stop-workers  SIGTERM every worker
#
# Settings come from the environment; `make up` passes its command line on
# (make up PLUGINS=... CORRAL_CONSUL_PORT=...). Defaults in scripts/env.sh.
#
#   CORRAL_PLUGINS       the plugin binaries every worker runs, separated by
#                        spaces, each PATH or PATH@sha256=HEX; a relative PATH
#                        is relative to the current folder (for make: the
#                        Corral checkout). `make up PLUGINS="..."` sets it.
#                        Default: bin/donations-plugin, or, while workers of
#                        this $CORRAL_STATE run, the plugins they run.
#   CORRAL_CONSUL_PORT   Consul's HTTP API and UI (8500); Consul's server RPC
#                        and Serf LAN and WAN ports are this - 200, - 199 and
#                        - 198 (8300, 8301, 8302)
#   CORRAL_REDIS_PORT    Redis (6390)
#   CORRAL_WORKER_PORT   worker i's gRPC API is on this + i (7101, 7102, ...)
#   CORRAL_WORKERS       how many workers up starts (3)
#   CORRAL_STATE         pid files, logs (logs/) and Redis's data (.corral/)
#   CORRAL_WORKER_FLAGS  more worker flags, for every worker (bin/worker --help)
#   CORRAL_BIN           the folder of the worker and coordinator binaries (bin/)
#   CORRAL_CONSUL_BIN    the consul to run (bin/consul, else consul on PATH)
#   CORRAL_REDIS_BIN     the redis-server to run (redis-server on PATH)
#
# up, services and workers check every port they are about to use first. A
# port that something else holds (another checkout's cluster, a second
# $CORRAL_STATE on the same ports, any other server) is refused before
# anything starts: they name the port, what holds it (from ss; without ss,
# only the port) and the variable that moves it, and exit 1. Ports held by
# this $CORRAL_STATE's own running processes are fine: those processes are
# kept, not started again. While they run, other ports or other plugins for
# the same $CORRAL_STATE are refused too: a second cluster needs a state
# folder of its own, and other plugins need the workers stopped first.
set -euo pipefail
shopt -s nullglob
caller=$PWD # relative plugin paths are relative to it
cd "$(dirname "$0")/.."
. scripts/env.sh

log() { echo "cluster: $*"; }
die() { echo "cluster: $*" >&2; exit 1; }

# alive FILE [NAME]: the process in pid file FILE runs (and, where /proc
# tells, is a NAME: a pid file left from before a reboot may name another
# program's process by now).
alive() {
  [ -f "$1" ] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  [ -z "${2:-}" ] || [ ! -r "/proc/$pid/comm" ] || [ "$(cat "/proc/$pid/comm")" = "$(basename "$2" | cut -c1-15)" ]
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "timed out after ${secs}s waiting for $what; logs in $CORRAL_STATE/logs"
  return 1
}

# holder PORT tcp|udp: prints what holds PORT on this machine (a TCP
# listener, or a bound UDP socket), nothing if it is free. ss names the
# process; without ss, /proc/net only says that the port is taken.
holder() {
  local port=$1 proto=$2
  if command -v ss >/dev/null 2>&1; then
    local out who
    out=$(ss -Hlnp "--$proto" "sport = :$port" 2>/dev/null || true)
    [ -n "$out" ] || return 0
    who=$(grep -o '"[^"]*",pid=[0-9]*' <<<"$out" | sed 's/^"\(.*\)",pid=\([0-9]*\)$/\1 (pid \2)/' | sort -u | paste -sd, - | sed 's/,/, /g' || true)
    echo "${who:-a process of another user}"
  elif [ -r /proc/net/tcp ]; then
    local files=() f state=0A
    [ "$proto" = tcp ] || state=
    for f in "/proc/net/$proto" "/proc/net/${proto}6"; do
      if [ -r "$f" ]; then files+=("$f"); fi
    done
    [ "${#files[@]}" -gt 0 ] && awk -v port="$(printf '%04X' "$port")" -v state="$state" \
      'FNR > 1 && (state == "" || $4 == state) && substr($2, length($2) - 3) == port { found = 1 }
       END { exit !found }' "${files[@]}" && echo "a process (install ss, from iproute2, to see which)"
  elif [ "$proto" = tcp ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "a process"
  fi
  return 0
}

# want_port PORT [udp] WHAT VARIABLE: note PORT as taken if something holds
# it (for TCP, and with udp for UDP as well); refuse_taken_ports then reports
# every taken port at once.
taken=()
want_port() {
  local port=$1 udp=false who
  if [ "$2" = udp ]; then udp=true; shift; fi
  who=$(holder "$port" tcp)
  if [ -z "$who" ] && $udp; then
    who=$(holder "$port" udp)
    [ -z "$who" ] || port+=/udp
  fi
  if [ -n "$who" ]; then taken+=("port $port ($2) is in use by $who; $3 moves it" "$3"); fi
}

# free_for VARIABLE VALUE: every port VARIABLE=VALUE would give this
# cluster is free, for TCP and UDP.
free_for() {
  local ports=() p i
  case $1 in
    CORRAL_CONSUL_PORT) ports=("$2" $(($2 - 200)) $(($2 - 199)) $(($2 - 198))) ;;
    CORRAL_REDIS_PORT) ports=("$2") ;;
    CORRAL_WORKER_PORT) for i in $(seq 1 "$workers_n"); do ports+=($(($2 + i))); done ;;
  esac
  for p in "${ports[@]}"; do
    [ "$p" -ge 1 ] && [ "$p" -le 65535 ] && [ -z "$(holder "$p" tcp)$(holder "$p" udp)" ] || return 1
  done
}

refuse_taken_ports() {
  [ "${#taken[@]}" = 0 ] && return 0
  local i v step value moves=()
  for ((i = 0; i < ${#taken[@]}; i += 2)); do
    echo "cluster: ${taken[i]}" >&2
    [[ " ${moves[*]} " == *" ${taken[i + 1]}="* ]] && continue
    # Suggest a value whose ports are all free now.
    v=${taken[i + 1]} step=10
    [ "$v" != CORRAL_WORKER_PORT ] || step=100
    for value in $(seq $((${!v} + step)) "$step" $((${!v} + 20 * step))); do
      if free_for "$v" "$value"; then moves+=("$v=$value"); break; fi
    done
  done
  echo "cluster: nothing started. Stop what holds them (another Corral cluster: 'make down' in its" >&2
  echo "cluster: checkout, or CORRAL_STATE=its-state scripts/cluster.sh down), or move this cluster:" >&2
  echo "cluster:   make up ${moves[*]}   (free now; scripts/cluster.sh takes them from the environment)" >&2
  exit 1
}

port_number() { # port_number VARIABLE: its value, if it is a port
  local v=${!1}
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] && [ "$v" -le 65535 ] || die "$1=$v is not a port number"
}

# check_services: the ports of Consul and Redis, unless they run already.
check_services() {
  port_number CORRAL_CONSUL_PORT
  port_number CORRAL_REDIS_PORT
  if ! alive "$CORRAL_STATE/consul.pid" "$CONSUL"; then
    local base=$((CORRAL_CONSUL_PORT - 200))
    [ "$base" -ge 1 ] || die "CORRAL_CONSUL_PORT=$CORRAL_CONSUL_PORT: Consul's server port would be $base; use a port above 200"
    want_port "$CORRAL_CONSUL_PORT" "Consul HTTP API" CORRAL_CONSUL_PORT
    want_port "$base" "Consul server RPC, CORRAL_CONSUL_PORT - 200" CORRAL_CONSUL_PORT
    want_port $((base + 1)) udp "Consul Serf LAN, CORRAL_CONSUL_PORT - 199" CORRAL_CONSUL_PORT
    want_port $((base + 2)) udp "Consul Serf WAN, CORRAL_CONSUL_PORT - 198" CORRAL_CONSUL_PORT
  fi
  if ! alive "$CORRAL_STATE/redis.pid" "$REDIS_SERVER"; then
    want_port "$CORRAL_REDIS_PORT" "Redis" CORRAL_REDIS_PORT
  fi
}

# check_workers N: the ports of workers 1..N that do not run.
workers_n=0
check_workers() {
  local n=$1 i
  [[ $n =~ ^[0-9]+$ ]] || die "number of workers: $n"
  workers_n=$n
  port_number CORRAL_WORKER_PORT
  [ $((CORRAL_WORKER_PORT + n)) -le 65535 ] || die "CORRAL_WORKER_PORT=$CORRAL_WORKER_PORT: worker $n would listen on $((CORRAL_WORKER_PORT + n))"
  for i in $(seq 1 "$n"); do
    alive "$CORRAL_STATE/worker-$i.pid" "$CORRAL_BIN/worker" ||
      want_port $((CORRAL_WORKER_PORT + i)) "worker-$i's gRPC API, CORRAL_WORKER_PORT + $i" CORRAL_WORKER_PORT
  done
}

# same_ports: refuses ports other than those the running processes of this
# $CORRAL_STATE were started with: a second cluster needs a state of its own.
# record_ports notes them for the processes about to start.
ports="CORRAL_CONSUL_PORT=$CORRAL_CONSUL_PORT CORRAL_REDIS_PORT=$CORRAL_REDIS_PORT CORRAL_WORKER_PORT=$CORRAL_WORKER_PORT"
same_ports() {
  local had=""
  [ -f "$CORRAL_STATE/ports" ] && had=$(cat "$CORRAL_STATE/ports")
  [ -n "$had" ] && [ "$had" != "$ports" ] || return 0
  if any_worker_alive || alive "$CORRAL_STATE/consul.pid" "$CONSUL" || alive "$CORRAL_STATE/redis.pid" "$REDIS_SERVER"; then
    die "the cluster of $CORRAL_STATE runs with $had; a second cluster on other ports needs a state folder of its own too (CORRAL_STATE=$PWD/.corral2)"
  fi
}
record_ports() { echo "$ports" >"$CORRAL_STATE/ports"; }

any_worker_alive() {
  local f
  for f in "$CORRAL_STATE"/worker-*.pid; do
    alive "$f" "$CORRAL_BIN/worker" && return 0
  done
  return 1
}

# resolve_plugins: sets plugins to the absolute paths of $CORRAL_PLUGINS
# (default: what the running workers run, else the donations plugin), each
# an executable file, and refuses a set other than the running workers'.
plugins=()
resolve_plugins() {
  local given=${CORRAL_PLUGINS:-} recorded="" running=false p path pin
  [ -f "$CORRAL_STATE/plugins" ] && recorded=$(cat "$CORRAL_STATE/plugins")
  any_worker_alive && running=true
  if [ -z "$given" ]; then
    if $running && [ -n "$recorded" ]; then given=$recorded; else given=$CORRAL_BIN/donations-plugin; fi
  fi
  for p in $given; do
    path=${p%@sha256=*}
    pin=${p:${#path}}
    case $path in /*) ;; *) path=$caller/$path ;; esac
    [ -f "$path" ] && [ -x "$path" ] ||
      die "plugin $path: no executable file there (build it first)"
    plugins+=("$(cd "$(dirname "$path")" && pwd)/$(basename "$path")$pin")
  done
  if $running && [ -n "$recorded" ] && [ "$recorded" != "${plugins[*]}" ]; then
    die "the workers of $CORRAL_STATE run CORRAL_PLUGINS=\"$recorded\"; stop them first to run \"${plugins[*]}\" (scripts/cluster.sh stop-workers, or make down)"
  fi
}

start_consul() {
  alive "$CORRAL_STATE/consul.pid" "$CONSUL" && return
  # Every port follows the HTTP port, so a second cluster (make bench) can
  # run beside the first.
  local base=$((CORRAL_CONSUL_PORT - 200))
  "$CONSUL" agent -dev -config-file deploy/consul/dev.hcl -http-port "$CORRAL_CONSUL_PORT" \
    -server-port "$base" -serf-lan-port $((base + 1)) -serf-wan-port $((base + 2)) -dns-port -1 -grpc-port -1 \
    >"$CORRAL_STATE/logs/consul.log" 2>&1 &
  echo $! >"$CORRAL_STATE/consul.pid"
  wait_for 30 "a Consul leader" "$CONSUL" kv put -http-addr="$CORRAL_CONSUL_ADDR" corral/ready 1
  alive "$CORRAL_STATE/consul.pid" || die "consul exited; last lines of $CORRAL_STATE/logs/consul.log:
$(tail -5 "$CORRAL_STATE/logs/consul.log")"
  log "consul agent up: UI at http://$CORRAL_CONSUL_ADDR/ui"
}

start_redis() {
  alive "$CORRAL_STATE/redis.pid" "$REDIS_SERVER" && return
  mkdir -p "$CORRAL_STATE/redis"
  "$REDIS_SERVER" --port "$CORRAL_REDIS_PORT" --bind 127.0.0.1 --dir "$CORRAL_STATE/redis" \
    --appendonly yes --appendfsync everysec --save "" \
    --auto-aof-rewrite-min-size "${CORRAL_REDIS_AOF_REWRITE_MIN:-1gb}" \
    >"$CORRAL_STATE/logs/redis.log" 2>&1 &
  echo $! >"$CORRAL_STATE/redis.pid"
  wait_for 10 "redis" "$REDIS_CLI" -p "$CORRAL_REDIS_PORT" ping
  # The server that answers must be ours, not one that took the port first.
  local answering
  answering=$("$REDIS_CLI" -p "$CORRAL_REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')
  [ "$answering" = "$(cat "$CORRAL_STATE/redis.pid")" ] ||
    die "another redis-server (pid $answering) answers on port $CORRAL_REDIS_PORT; ours exited: see $CORRAL_STATE/logs/redis.log"
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
  [ -f "$dir/ca.pem" ] || "$CORRAL_BIN/coordinator" certs init --dir "$dir" >/dev/null
  [ -f "$dir/$1.pem" ] || "$CORRAL_BIN/coordinator" certs issue --dir "$dir" --role peer --name "$1" >/dev/null
  worker_tls=(--tls-cert "$dir/$1.pem" --tls-key "$dir/$1-key.pem" --tls-ca "$dir/ca.pem")
}

start_workers() {
  local n=$1 started=() i args=() p
  for p in "${plugins[@]}"; do args+=(--plugin "$p"); done
  for i in $(seq 1 "$n"); do
    local pid="$CORRAL_STATE/worker-$i.pid"
    alive "$pid" "$CORRAL_BIN/worker" && continue
    worker_certs "worker-$i"
    # /metrics on a free loopback port (published in Consul meta): it has
    # no authentication. CORRAL_WORKER_FLAGS="--metrics ..." overrides it.
    "$CORRAL_BIN/worker" --id "worker-$i" --listen "127.0.0.1:$((CORRAL_WORKER_PORT + i))" "${args[@]}" \
      --metrics 127.0.0.1:0 "${worker_tls[@]}" ${CORRAL_WORKER_FLAGS:-} >"$CORRAL_STATE/logs/worker-$i.log" 2>&1 &
    echo $! >"$pid"
    started+=("$i")
  done
  echo "${plugins[*]}" >"$CORRAL_STATE/plugins"
  wait_for 30 "$n healthy workers" healthy "$n" || {
    for i in "${started[@]}"; do
      alive "$CORRAL_STATE/worker-$i.pid" || log "worker-$i exited; last lines of $CORRAL_STATE/logs/worker-$i.log:
$(tail -5 "$CORRAL_STATE/logs/worker-$i.log")"
    done
    exit 1
  }
  for i in "${started[@]}"; do
    alive "$CORRAL_STATE/worker-$i.pid" || die "worker-$i exited; last lines of $CORRAL_STATE/logs/worker-$i.log:
$(tail -5 "$CORRAL_STATE/logs/worker-$i.log")"
  done
  [ "${#started[@]}" = 0 ] || log "${#started[@]} worker(s) up with ${plugins[*]}; logs in $CORRAL_STATE/logs"
}

healthy() {
  [ "$("$CORRAL_BIN/coordinator" status 2>/dev/null | grep -c '^worker-')" -ge "$1" ]
}

need_binaries() { # need_binaries services|workers
  if [ "$1" = services ]; then
    [ -n "$CONSUL" ] || die "no consul: run 'make deps' (or set CORRAL_CONSUL_BIN)"
    [ -n "$REDIS_SERVER" ] || die "no redis-server: run 'make deps' (or set CORRAL_REDIS_BIN)"
  else
    local b
    for b in worker coordinator; do
      [ -x "$CORRAL_BIN/$b" ] || die "no $CORRAL_BIN/$b: run 'make build'"
    done
  fi
}

stop_pidfile() { # stop_pidfile FILE SIGNAL NAME
  local f=$1
  if alive "$f" "$3"; then
    local pid; pid=$(cat "$f")
    kill "-$2" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_workers() {
  for f in "$CORRAL_STATE"/worker-*.pid; do stop_pidfile "$f" TERM "$CORRAL_BIN/worker"; done
}

case "${1:-}" in
  up)
    need_binaries services
    need_binaries workers
    resolve_plugins
    same_ports
    check_services
    check_workers "$CORRAL_WORKERS"
    refuse_taken_ports
    mkdir -p "$CORRAL_STATE/logs"
    record_ports
    start_consul
    start_redis
    start_workers "$CORRAL_WORKERS"
    if [ "$CORRAL_CONSUL_PORT" != 8500 ]; then
      log "coordinator finds this cluster with: export CORRAL_CONSUL_ADDR=$CORRAL_CONSUL_ADDR (or --consul $CORRAL_CONSUL_ADDR)"
    fi
    ;;
  workers)
    need_binaries workers
    resolve_plugins
    same_ports
    check_workers "${2:?number of workers}"
    refuse_taken_ports
    mkdir -p "$CORRAL_STATE/logs"
    record_ports
    start_workers "$2"
    ;;
  services)
    need_binaries services
    same_ports
    check_services
    refuse_taken_ports
    mkdir -p "$CORRAL_STATE/logs"
    record_ports
    start_consul
    start_redis
    ;;
  stop-workers)
    stop_workers
    ;;
  down)
    [ -d "$CORRAL_STATE" ] || { log "nothing running"; exit 0; }
    stop_workers
    stop_pidfile "$CORRAL_STATE/redis.pid" TERM "$REDIS_SERVER"
    stop_pidfile "$CORRAL_STATE/consul.pid" INT "$CONSUL"
    rm -rf "$CORRAL_STATE"
    log "stopped; state removed"
    ;;
  *)
    echo "usage: scripts/cluster.sh up|down|services|workers N|stop-workers" >&2
    exit 2
    ;;
esac
