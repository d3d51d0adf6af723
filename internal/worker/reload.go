package worker

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/api/workerpb"
)

// ReloadPlugins relaunches this worker's plugins from their binaries, as
// SIGHUP does: batches in flight finish on the old processes, new batches
// go to the new ones. If a new binary fails to start (bad checksum, crash,
// dropped handler) nothing changes and the error says why.
func (a *API) ReloadPlugins(ctx context.Context, _ *workerpb.ReloadPluginsRequest) (*workerpb.ReloadPluginsResponse, error) {
	plugins, err := a.w.handlers.Reload(ctx)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "reload plugins on %s: %v", a.w.cfg.ID, err)
	}
	return &workerpb.ReloadPluginsResponse{Plugins: plugins}, nil
}
