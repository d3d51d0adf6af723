package worker

import (
	"context"
	"sort"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/plugins/host"
)

// reloadPlugins relaunches h's plugins from their binaries and says what
// changed: the old and new version of every plugin when h reports them.
func reloadPlugins(ctx context.Context, h Handlers) (*workerpb.ReloadPluginsResponse, error) {
	r, ok := h.(interface {
		ReloadChanges(ctx context.Context) ([]host.PluginChange, error)
	})
	if !ok {
		plugins, err := h.Reload(ctx)
		if err != nil {
			return nil, err
		}
		return &workerpb.ReloadPluginsResponse{Plugins: plugins}, nil
	}
	changes, err := r.ReloadChanges(ctx)
	if err != nil {
		return nil, err
	}
	resp := &workerpb.ReloadPluginsResponse{}
	for _, c := range changes {
		resp.Plugins = append(resp.Plugins, c.Name+"@"+c.To)
		resp.Changes = append(resp.Changes, &workerpb.PluginChange{Name: c.Name, FromVersion: c.From, ToVersion: c.To,
			FromSha256: c.FromSHA256, ToSha256: c.ToSHA256})
	}
	sort.Strings(resp.Plugins)
	return resp, nil
}

// pluginInfo is what h reports of each plugin's running binary and of a
// file at its path that does not run; nil when h does not say
// (plugins/host.Manager does).
func pluginInfo(h Handlers) []*workerpb.PluginInfo {
	s, ok := h.(interface{ PluginStatus() []host.PluginStatus })
	if !ok {
		return nil
	}
	var out []*workerpb.PluginInfo
	for _, p := range s.PluginStatus() {
		out = append(out, &workerpb.PluginInfo{Name: p.Name, Version: p.Version, Sha256: p.SHA256, Path: p.Path,
			Refused: p.Refused, RefusedSha256: p.RefusedSHA256})
	}
	return out
}
