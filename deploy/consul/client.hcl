# Consul client agent for a machine that runs Corral workers. Each worker
# registers with this local agent (--consul 127.0.0.1:8500), which forwards
# to the servers and keeps the worker's TTL check.
#
#   consul agent -config-file /etc/consul.d/client.hcl

datacenter = "dc1"
node_name  = "worker-host-1"
data_dir   = "/var/lib/consul"
server     = false

retry_join = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]

bind_addr   = "10.0.1.21" # this machine's cluster address
client_addr = "127.0.0.1" # workers on this machine talk to the agent over loopback

# Gossip encryption: the servers' key, uncommented.
# encrypt = "<output of consul keygen>"

tls {
  defaults {
    ca_file         = "/etc/consul.d/tls/consul-agent-ca.pem"
    verify_incoming = false
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
  tokens {
    # A token with `node "worker-host-1" { policy = "write" }` so the agent
    # can register its own node (consul acl token create -node-identity).
    agent = "REPLACE-WITH-AGENT-TOKEN"
  }
}

check_update_interval = "5m"

ports {
  dns  = -1
  grpc = -1
}

connect {
  enabled = false
}
