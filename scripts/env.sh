# Sourced by the scripts: where the local cluster lives, its ports and which
# binaries it runs. Each can be set in the environment (or on the make
# command line: make up CORRAL_CONSUL_PORT=8600); scripts/cluster.sh's
# header says what each one is.
CORRAL_STATE=${CORRAL_STATE:-$PWD/.corral}
CORRAL_REDIS_PORT=${CORRAL_REDIS_PORT:-6390}
CORRAL_CONSUL_PORT=${CORRAL_CONSUL_PORT:-8500} # Consul's server and Serf ports are this - 200, - 199, - 198
CORRAL_WORKERS=${CORRAL_WORKERS:-3}
CORRAL_WORKER_PORT=${CORRAL_WORKER_PORT:-7100} # worker i listens on this + i
CORRAL_BIN=${CORRAL_BIN:-$PWD/bin}             # the worker and coordinator scripts/cluster.sh runs
export CORRAL_CONSUL_ADDR=127.0.0.1:$CORRAL_CONSUL_PORT
export CORRAL_REDIS_ADDR=127.0.0.1:$CORRAL_REDIS_PORT
if [ -n "${CORRAL_CONSUL_BIN:-}" ]; then CONSUL=$CORRAL_CONSUL_BIN
elif [ -x bin/consul ]; then CONSUL=$PWD/bin/consul
else CONSUL=$(command -v consul || true); fi
REDIS_SERVER=${CORRAL_REDIS_BIN:-$(command -v redis-server || true)}
if [ -n "$REDIS_SERVER" ] && [ -x "$(dirname "$REDIS_SERVER")/redis-cli" ]; then
  REDIS_CLI=$(dirname "$REDIS_SERVER")/redis-cli
else
  REDIS_CLI=redis-cli
fi
