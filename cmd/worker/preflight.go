package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/discovery"
	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"
)

// errConsulToken means the agent refused the worker's ACL token.
var errConsulToken = errors.New("Consul refused the ACL token")

// checkConsulToken asks the agent who the token is, so a wrong or expired
// token stops the worker at once with a sentence, instead of after the
// plugins started and the lease was taken. An agent without ACLs passes.
func checkConsulToken(ctx context.Context, addr, token string) error {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	if token != "" {
		cfg.Token = token
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("consul client for %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _, err = client.ACL().TokenReadSelf((&api.QueryOptions{}).WithContext(ctx))
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "ACL support disabled"):
		return nil
	case strings.Contains(msg, "ACL not found"), strings.Contains(msg, "403"):
		return fmt.Errorf("%w at %s (%v): check --consul-token / CONSUL_HTTP_TOKEN", errConsulToken, addr, err)
	}
	return discovery.Unreachable(addr, err)
}

// checkEvictionPolicy refuses a Redis (every master of a Redis Cluster)
// whose maxmemory-policy is not noeviction: an allkeys-* policy evicts any
// key, leases and fencing epochs among them, a volatile-* one the keys
// with a TTL, leases and finished job ids among them; either breaks
// fencing or dedup silently. With noeviction a full Redis refuses writes,
// which the worker reports and retries. The policy is read from INFO
// memory, which the least-privilege user of deploy/redis/users.acl may
// run, or else with CONFIG GET (a Redis older than 4.0 has no
// maxmemory_policy line); CONFIG is not granted there, since CONFIG GET
// reads the server's passwords too.
func checkEvictionPolicy(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return checkNodeEvictionPolicy(ctx, n, " on "+n.Options().Addr)
		})
	}
	return checkNodeEvictionPolicy(ctx, rdb, "")
}

func checkNodeEvictionPolicy(ctx context.Context, rdb redis.Cmdable, where string) error {
	policy, err := evictionPolicy(ctx, rdb)
	if err != nil {
		return fmt.Errorf("cannot read Redis maxmemory-policy%s (INFO memory, then CONFIG GET): %w; let the worker's Redis user run INFO (deploy/redis/users.acl grants it)", where, err)
	}
	var why string
	switch {
	case policy == "noeviction":
		return nil
	case strings.HasPrefix(policy, "allkeys-"):
		why = "it would evict leases and fencing epochs"
	case strings.HasPrefix(policy, "volatile-"):
		why = "it would evict keys with a TTL: leases, and finished job ids before their dedup window ends"
	default:
		why = "it may evict keys Corral needs"
	}
	return fmt.Errorf("Redis maxmemory-policy is %s%s: %s; set it to noeviction", policy, where, why)
}

func evictionPolicy(ctx context.Context, rdb redis.Cmdable) (string, error) {
	info, infoErr := rdb.Info(ctx, "memory").Result()
	if infoErr == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
				return v, nil
			}
		}
		infoErr = errors.New("INFO memory has no maxmemory_policy")
	}
	m, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil && m["maxmemory-policy"] != "" {
		return m["maxmemory-policy"], nil
	}
	if err == nil {
		err = errors.New("CONFIG GET has no maxmemory-policy")
	}
	return "", fmt.Errorf("%w; %w", infoErr, err)
}
