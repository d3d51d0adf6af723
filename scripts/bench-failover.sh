#!/usr/bin/env bash
# Failover benchmark on a throwaway cluster of its own (Redis with AOF, a
# Consul dev agent, three workers, steady load): time from SIGKILL and from
# SIGTERM of a worker to the first commit of each partition it held, under
# its new owner. Prints p50/p99/max, then the owner changes after SIGSTOP
# pauses of 200 ms and 500 ms (false takeovers); FAILBENCH_ROUNDS sets the
# rounds, FAILBENCH_FLAGS passes failbench flags (-pauses, -worker-flags).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3)"
exec bin/failbench -bin bin -rounds "${FAILBENCH_ROUNDS:-5}" ${FAILBENCH_FLAGS:-}
