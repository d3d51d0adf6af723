# A single-node Consul dev agent for the local Corral cluster. It is server
# and client at once and keeps its state in memory: a restart forgets every
# registered worker (the workers register again on their next health report).
#
#   consul agent -dev -config-file deploy/consul/dev.hcl
#
# scripts/cluster.sh starts it that way and moves every port with flags
# (flags win over this file). UI: http://127.0.0.1:8500/ui

node_name   = "corral-dev"
bind_addr   = "127.0.0.1" # gossip and server RPC
client_addr = "127.0.0.1" # HTTP API and UI
log_level   = "WARN"

ui_config {
  enabled = true
}

# Corral only uses the HTTP API: no DNS, no gRPC (Envoy xDS), no service mesh.
ports {
  dns      = -1
  grpc     = -1
  grpc_tls = -1
}

connect {
  enabled = false
}

# Send every check output to the catalog at once, so the UI shows each
# worker's latest report (Consul's default holds steady-state output back
# for 5m). Costs one write per report: fine for a dev cluster.
check_update_interval = "0s"

# No calls home from a developer's machine.
disable_update_check = true
