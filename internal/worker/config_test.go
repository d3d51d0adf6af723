package worker

import (
	"strings"
	"testing"
	"time"
)

// TestConfigRetentions: every window Corral keeps things for is bounded
// and the ones that depend on each other are checked together.
func TestConfigRetentions(t *testing.T) {
	t.Parallel()
	base := DefaultConfig()
	base.ID = "w1"
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no dedup window", func(c *Config) { c.Store.DoneRetention = 0 }, "dedup window"},
		{"sub-second dedup window", func(c *Config) { c.Store.DoneRetention = 500 * time.Millisecond }, "dedup window"},
		{"results kept for ever", func(c *Config) { c.Store.ResultRetention = 0 }, "result retention"},
		{"no audit cap", func(c *Config) { c.Store.Audit, c.Store.AuditMax = true, 0 }, "audit"},
		{"dead letters kept for ever", func(c *Config) { c.Store.DeadRetention = 0 }, "dead-letter retention"},
		{"no dead-letter cap", func(c *Config) { c.Store.DeadMax = 0 }, "dead letters"},
		{"metrics over TLS without a certificate", func(c *Config) { c.MetricsTLS = true }, "metrics over TLS needs the worker's TLS certificate"},
	} {
		cfg := base
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}
