package worker

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/plugins/host"
)

// reportingHandlers reports versions as plugins/host.Manager does.
type reportingHandlers struct {
	handlersAPI // nil: only the methods below are called
	changes     []host.PluginChange
	err         error
	status      []host.PluginStatus
}

func (r reportingHandlers) ReloadChanges(context.Context) ([]host.PluginChange, error) {
	return r.changes, r.err
}

func (r reportingHandlers) PluginStatus() []host.PluginStatus { return r.status }

func TestReloadPluginsReportsVersions(t *testing.T) {
	t.Parallel()
	h := reportingHandlers{changes: []host.PluginChange{
		{Name: "inventory", From: "1.0.0", To: "1.1.0", FromSHA256: "aa", ToSHA256: "bb"},
		{Name: "donations", From: "0.1.0", To: "0.1.0", FromSHA256: "cc", ToSHA256: "cc"},
	}}
	a := &API{id: "w1"}
	a.reload = func(ctx context.Context) (*workerpb.ReloadPluginsResponse, error) { return reloadPlugins(ctx, h) }
	resp, err := a.ReloadPlugins(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(resp.Plugins, " "); got != "donations@0.1.0 inventory@1.1.0" {
		t.Errorf("plugins = %s", got)
	}
	if c := resp.Changes; len(c) != 2 || c[0].Name != "inventory" || c[0].FromVersion != "1.0.0" || c[0].ToVersion != "1.1.0" ||
		c[0].FromSha256 != "aa" || c[0].ToSha256 != "bb" {
		t.Errorf("changes = %v", c)
	}

	h.err = errors.New("launch plugin /p: the plugin exited before the handshake (exit status 3); stderr: config missing: X")
	_, err = a.ReloadPlugins(context.Background(), nil)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "on w1") || !strings.Contains(err.Error(), "config missing: X") {
		t.Errorf("failed reload = %v", err)
	}
}

func TestPluginInfo(t *testing.T) {
	t.Parallel()
	if got := pluginInfo(staticHandlers{}); got != nil {
		t.Errorf("handlers that report nothing gave %v", got)
	}
	got := pluginInfo(reportingHandlers{status: []host.PluginStatus{{Name: "inventory", Version: "1.0.0", Path: "/p",
		SHA256: "aa", Refused: "reload failed: exit status 3", RefusedSHA256: "bb"}}})
	if len(got) != 1 || got[0].Name != "inventory" || got[0].Version != "1.0.0" || got[0].Path != "/p" || got[0].Sha256 != "aa" ||
		got[0].Refused != "reload failed: exit status 3" || got[0].RefusedSha256 != "bb" {
		t.Errorf("pluginInfo = %v", got)
	}
}
