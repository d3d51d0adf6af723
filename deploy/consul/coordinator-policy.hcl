# ACL policy for the coordinator CLI and Go clients: find healthy workers.
#
#   consul acl policy create -name corral-coordinator -rules @deploy/consul/coordinator-policy.hcl
#   consul acl token create -description "corral coordinator" -policy-name corral-coordinator

service "corral-worker" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
