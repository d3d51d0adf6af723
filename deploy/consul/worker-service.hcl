# What every worker registers with its local agent, written as a Consul
# service definition for reference (`consul validate client.hcl worker-service.hcl`). Do NOT load
# it into an agent: the worker registers itself at start (with its own id,
# address and meta) and deregisters on SIGTERM; a static copy would linger
# as a critical instance after the worker stops.

service {
  name    = "corral-worker"
  id      = "worker-host-1-7070"   # --id (default HOST-PORT); also the worker's name on the ring
  address = "10.0.1.21"            # host of --advertise
  port    = 7070                   # port of --advertise: the worker gRPC API
  tags    = ["corral-worker", "metrics"]

  meta = {
    partitions = "64"              # the cluster's P; equal on every worker
    version    = "v1.0.0"          # build version (-ldflags -X .../internal/worker.Version=...)
    metrics    = "10.0.1.21:9464"  # --metrics: Prometheus /metrics of this worker
    lease      = "worker-host-1-7070~3f2a9c1d0b7e" # its Redis liveness lease token
  }

  check {
    id                                = "corral-loop:worker-host-1-7070"
    name                              = "corral worker loop"
    ttl                               = "3s"  # --check-ttl; the job loop reports every TTL/3
    deregister_critical_service_after = "1m"
  }
}
