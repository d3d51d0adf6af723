package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/examples/donations/workload"
)

// TestFailedReloadThenPluginCrash is the trap of a failed upgrade: a
// plugin binary that exits at start is installed and reloaded, which
// fails with the plugin's own words; then the running plugin is
// SIGKILLed. The worker relaunches the last good binary, not the broken
// file, and keeps processing donations; status names the refused file.
func TestFailedReloadThenPluginCrash(t *testing.T) {
	c := newCluster(t)
	plugin := filepath.Join(c.dir, "donations-plugin")
	installPlugin(t, filepath.Join(c.bins, "donations-plugin"), plugin)
	c.startPlugin("w1", plugin)

	broken := filepath.Join(c.dir, "broken-plugin")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'config missing: INVENTORY_DB_URL' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	installPlugin(t, broken, plugin)
	out, err := c.coordinator("reload")
	t.Logf("coordinator reload of a broken binary: %v\n%s", err, out)
	if err == nil || !strings.Contains(out, "config missing: INVENTORY_DB_URL") || !strings.Contains(out, "exit status 3") ||
		strings.Count(out, "\n") != 1 {
		t.Fatalf("reload printed:\n%s", out)
	}
	out, err = c.coordinator("status")
	if err != nil || !strings.Contains(out, "donations@0.1.0") || !strings.Contains(out, "new file not running") ||
		!strings.Contains(out, "w1: plugin donations runs sha256") || !strings.Contains(out, "reload failed") {
		t.Fatalf("status after the failed reload: %v\n%s", err, out)
	}
	t.Logf("status:\n%s", out)

	pids := c.pluginPids("w1")
	if len(pids) != 1 {
		t.Fatalf("w1 runs plugin processes %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exp := submitAll(ctx, t, c, workload.Spec{Seed: 5, Donations: 200, Donors: 20, Campaigns: 4}, nil)
	verifyTotals(ctx, t, c, exp, "after a failed reload and a plugin crash")
	out, err = c.coordinator("status")
	if err != nil || !strings.Contains(out, "donations@0.1.0") || strings.Contains(out, "DEGRADED") ||
		!strings.Contains(out, "new file not running") {
		t.Fatalf("status after the crash: %v\n%s", err, out)
	}
	t.Logf("status after the crash:\n%s", out)
}
