# ACL policy for Corral workers: the least a worker needs.
#
#   consul acl policy create -name corral-worker -rules @deploy/consul/worker-policy.hcl
#   consul acl token create -description "corral worker" -policy-name corral-worker
#
# What each rule is for:
#  - service "corral-worker" write: register and deregister itself with its
#    local agent and update its TTL check (agent/service/register,
#    agent/check/update). Write includes read, which the membership watch
#    (health/service/corral-worker?passing) needs.
#  - node_prefix "" read: without it the health query filters out every
#    instance, because each one lives on a node the token cannot see.
# Nothing else: no KV, no sessions, no other services, no agent or operator
# endpoints. The coordinator needs only the read half (coordinator-policy.hcl).

service "corral-worker" {
  policy = "write"
}

node_prefix "" {
  policy = "read"
}
