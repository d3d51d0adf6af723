# One of three Consul servers for a production Corral cluster. Copy it to
# each server machine, set node_name and bind_addr, and keep the same
# retry_join list (the three servers' addresses) everywhere.
#
#   consul agent -config-file /etc/consul.d/server.hcl
#
# Three servers tolerate the loss of one. Workers never talk to servers
# directly: each worker machine runs a client agent (client.hcl).

datacenter = "dc1"
node_name  = "consul-server-1"
data_dir   = "/var/lib/consul"
server     = true

bootstrap_expect = 3
retry_join       = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]

bind_addr   = "10.0.0.11" # this server's cluster address
client_addr = "127.0.0.1" # HTTP API only on loopback; put the UI behind your proxy

ui_config {
  enabled = true
}

# Gossip encryption: generate once with `consul keygen`, same on every agent,
# and uncomment.
# encrypt = "<output of consul keygen>"

# TLS between agents (RPC) and on the HTTPS API; certificates from
# `consul tls ca create` / `consul tls cert create -server`.
tls {
  defaults {
    ca_file         = "/etc/consul.d/tls/consul-agent-ca.pem"
    cert_file       = "/etc/consul.d/tls/dc1-server-consul-0.pem"
    key_file        = "/etc/consul.d/tls/dc1-server-consul-0-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}

# Deny by default; bootstrap once with `consul acl bootstrap` (see README.md).
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}

# Workers report every check-TTL/3. Sending each report's output to the
# servers at once costs a Raft write per report and wakes every watcher's
# blocking query; the default (5m) syncs only status changes, which is what
# membership needs. See docs/scaling.md.
check_update_interval = "5m"

# Corral uses the HTTP API only.
ports {
  dns  = -1
  grpc = -1
}

connect {
  enabled = false
}

performance {
  raft_multiplier = 1
}
