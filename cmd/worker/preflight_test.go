package main

import (
	"context"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestRefusesEvictingRedis: a Redis that may evict keys (leases, epochs)
// stops the worker at start with a sentence, whether it may run INFO or
// CONFIG; noeviction passes.
func TestRefusesEvictingRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	r := testenv.StartRedis(t)
	admin := r.Client(t)
	// A user that may not run CONFIG, as on managed Redis.
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">secret", "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	limited := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "app", Password: "secret"})
	defer limited.Close()
	// And one that may not run INFO: the policy comes from CONFIG GET.
	if err := admin.Do(ctx, "ACL", "SETUSER", "noinfo", "on", ">secret", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	noInfo := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "noinfo", Password: "secret"})
	defer noInfo.Close()
	clients := map[string]redis.UniversalClient{"admin": admin, "without CONFIG": limited, "without INFO": noInfo}

	for name, rdb := range clients {
		if err := checkEvictionPolicy(ctx, rdb); err != nil {
			t.Errorf("%s, noeviction: %v", name, err)
		}
	}
	for _, policy := range []string{"allkeys-lru", "volatile-ttl"} {
		if err := admin.ConfigSet(ctx, "maxmemory-policy", policy).Err(); err != nil {
			t.Fatal(err)
		}
		for name, rdb := range clients {
			err := checkEvictionPolicy(ctx, rdb)
			if err == nil || !strings.Contains(err.Error(), "maxmemory-policy is "+policy) || !strings.Contains(err.Error(), "set it to noeviction") {
				t.Errorf("%s, %s: %v, want a refusal naming the policy", name, policy, err)
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
	}
}
