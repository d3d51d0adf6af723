# Sourced by the scripts: where the local cluster lives and which binaries
# it runs.
CORRAL_STATE=${CORRAL_STATE:-$PWD/.corral}
CORRAL_REDIS_PORT=${CORRAL_REDIS_PORT:-6390}
CORRAL_CONSUL_PORT=${CORRAL_CONSUL_PORT:-8500}
CORRAL_WORKERS=${CORRAL_WORKERS:-3}
CORRAL_WORKER_PORT=${CORRAL_WORKER_PORT:-7100} # worker i listens on this + i
export CORRAL_CONSUL_ADDR=127.0.0.1:$CORRAL_CONSUL_PORT
export CORRAL_REDIS_ADDR=127.0.0.1:$CORRAL_REDIS_PORT
if [ -x bin/consul ]; then CONSUL=$PWD/bin/consul; else CONSUL=$(command -v consul || true); fi
