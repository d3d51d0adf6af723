# Runs N Corral workers against an existing Consul cluster (a client agent
# on every Nomad client, see deploy/consul/client.hcl) and Redis.
#
#   nomad var put nomad/jobs/corral-worker redis_password=... consul_token=... \
#     tls_ca=@ca.pem tls_cert=@worker.pem tls_key=@worker-key.pem
#   nomad job run -var count=6 -var redis=10.0.2.10:6379 deploy/nomad/corral-worker.nomad.hcl
#
# For Redis Cluster give several nodes: -var redis=10.0.2.10:6379,10.0.2.11:6379,10.0.2.12:6379
#
# Workers register themselves in Consul (service "corral-worker", their own
# TTL check), so the job has no Nomad `service` block: Nomad's would be a
# second, check-less registration of the same process. Scale with
# `nomad job scale corral-worker workers N`; each worker hands its
# partitions off on SIGTERM (kill_timeout covers the hand-off).
#
# The gRPC API is mutual TLS (docs/security.md). The worker certificate in
# the variable has role peer and must name every Nomad client's address
# (coordinator certs issue --role peer --name corral-worker --host IP1
# --host IP2 ...); with Vault, a template on pki/issue with
# ip_sans={{ env "NOMAD_IP_grpc" }} gives each allocation its own instead.
# When the variable changes, Nomad re-renders the files and sends SIGHUP:
# the workers serve the new certificate without a restart (and relaunch
# their plugins).

variable "count" {
  type    = number
  default = 3
}

variable "redis" {
  type        = string
  description = "Redis address, or comma-separated Redis Cluster nodes"
}

variable "partitions" {
  type    = number
  default = 64
}

variable "artifact" {
  type        = string
  description = "URL of a tarball holding worker and the handler plugin binaries"
}

job "corral-worker" {
  type = "service"

  group "workers" {
    count = var.count

    # Never two workers of this job on one machine: a machine's loss then
    # costs one worker's partitions, which the others claim.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "grpc" {}
      port "metrics" {}
    }

    update {
      max_parallel     = 1   # one hand-off at a time
      min_healthy_time = "10s"
      healthy_deadline = "2m"
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }

    task "worker" {
      driver       = "exec"
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      artifact {
        source      = var.artifact
        destination = "local/"
      }

      template {
        data        = <<EOT
{{ with nomadVar "nomad/jobs/corral-worker" }}
CORRAL_REDIS_PASSWORD={{ .redis_password }}
CONSUL_HTTP_TOKEN={{ .consul_token }}
{{ end }}
EOT
        destination = "secrets/env"
        env         = true
      }

      template {
        data          = <<EOT
{{ with nomadVar "nomad/jobs/corral-worker" }}{{ .tls_ca }}{{ end }}
EOT
        destination   = "secrets/tls/ca.pem"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      # The certificate and its key in one file (the worker reads a key from
      # a file that also holds the certificate), so they change together.
      template {
        data          = <<EOT
{{ with nomadVar "nomad/jobs/corral-worker" }}{{ .tls_cert }}
{{ .tls_key }}{{ end }}
EOT
        destination   = "secrets/tls/worker.pem"
        perms         = "600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      config {
        command = "local/worker"
        args = [
          "--id", "${node.unique.name}-${NOMAD_ALLOC_INDEX}",
          "--listen", "0.0.0.0:${NOMAD_PORT_grpc}",
          "--advertise", "${NOMAD_ADDR_grpc}",
          "--metrics", "${NOMAD_ADDR_metrics}", # the host's address only: no authentication
          "--redis", var.redis,
          "--redis-username", "corral-worker", # deploy/redis/users.acl
          "--consul", "127.0.0.1:8500",
          "--partitions", "${var.partitions}",
          "--tls-cert", "secrets/tls/worker.pem",
          "--tls-key", "secrets/tls/worker.pem",
          "--tls-ca", "secrets/tls/ca.pem",
          "--plugin", "local/donations-plugin",
          "--log-format", "json",
        ]
      }

      resources {
        cpu    = 1000
        memory = 256
      }
    }
  }
}
