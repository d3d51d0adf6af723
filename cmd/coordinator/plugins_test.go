package main

import (
	"testing"

	"github.com/corralhq/corral/api/workerpb"
)

func TestReloadSummary(t *testing.T) {
	a, b := "1a2b3c4d5e6f", "5e6f7a8b9c0d"
	for _, tc := range []struct {
		resp *workerpb.ReloadPluginsResponse
		want string
	}{
		{&workerpb.ReloadPluginsResponse{Plugins: []string{"donations@0.2.0", "inventory@1.0.0"}},
			"donations@0.2.0 inventory@1.0.0"},
		{&workerpb.ReloadPluginsResponse{Plugins: []string{"donations@0.2.0", "inventory@1.0.0"}, Changes: []*workerpb.PluginChange{
			{Name: "donations", FromVersion: "0.1.0", ToVersion: "0.2.0", FromSha256: a, ToSha256: b},
			{Name: "inventory", FromVersion: "1.0.0", ToVersion: "1.0.0", FromSha256: a, ToSha256: a},
		}}, "donations@0.1.0 → donations@0.2.0 [sha256 1a2b3c4d → 5e6f7a8b], inventory@1.0.0 (unchanged)"},
		{&workerpb.ReloadPluginsResponse{Plugins: []string{"donations@0.1.0"}, Changes: []*workerpb.PluginChange{
			{Name: "donations", FromVersion: "0.1.0", ToVersion: "0.1.0", FromSha256: a, ToSha256: b},
		}}, "donations@0.1.0 → donations@0.1.0 [sha256 1a2b3c4d → 5e6f7a8b]"},
	} {
		if got := reloadSummary(tc.resp); got != tc.want {
			t.Errorf("reloadSummary = %q, want %q", got, tc.want)
		}
	}
}

func TestPluginSummary(t *testing.T) {
	old := &workerpb.MemberStatus{Plugins: []string{"donations@0.1.0"}, PluginRestarts: 2}
	if got, want := pluginSummary(old), "donations@0.1.0 (2 restarts)"; got != want {
		t.Errorf("pluginSummary of a worker without plugin info = %q, want %q", got, want)
	}
	m := &workerpb.MemberStatus{Plugins: []string{"donations@0.1.0", "inventory@1.0.0"}, Degraded: true, PluginInfo: []*workerpb.PluginInfo{
		{Name: "donations", Version: "0.1.0", Sha256: "1a2b3c4d5e6f"},
		{Name: "inventory", Version: "1.0.0", Sha256: "99aa88bb77cc", Refused: "reload failed: exit status 3", RefusedSha256: "5e6f7a8b9c0d"},
	}}
	if got, want := pluginSummary(m), "donations@0.1.0 1a2b3c4d,inventory@1.0.0 99aa88bb (DEGRADED, new file not running)"; got != want {
		t.Errorf("pluginSummary = %q, want %q", got, want)
	}
	m.Id, m.PluginInfo[1].Path = "w1", "/srv/inventory"
	lines := filesNotRunning(m)
	if want := "w1: plugin inventory runs sha256 99aa88bb, not the file at /srv/inventory (sha256 5e6f7a8b): reload failed: exit status 3"; len(lines) != 1 || lines[0] != want {
		t.Errorf("filesNotRunning = %q, want %q", lines, want)
	}
}
