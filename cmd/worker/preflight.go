package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
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
	return fmt.Errorf("cannot reach the Consul agent at %s: %w", addr, err)
}
