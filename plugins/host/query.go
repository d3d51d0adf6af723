package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// ErrUnknownEntity: a query names an entity type no handler declares.
var ErrUnknownEntity = errors.New("unknown entity")

// EntityLister is a Config.Host that knows entity types besides those of
// this manager's handlers, e.g. those other workers' plugins declare: a
// query for one of them is let through.
type EntityLister interface {
	KnownEntities() []string
}

// declaredEntities is the Host service as the manager offers it to its
// plugins: Config.Host, refusing a query for an entity type no handler
// declares (its own, or Config.Host's when it is an EntityLister). A
// misspelled entity would otherwise read as "no state yet" for ever.
type declaredEntities struct {
	pluginpb.HostServer
	m *Manager
}

// GetState refuses an undeclared entity type, naming the declared ones,
// and asks Config.Host otherwise.
func (d declaredEntities) GetState(ctx context.Context, req *pluginpb.HostGetStateRequest) (*pluginpb.HostGetStateResponse, error) {
	known := d.m.Entities()
	if l, ok := d.HostServer.(EntityLister); ok && !slices.Contains(known, req.GetEntity()) {
		for _, e := range l.KnownEntities() {
			if !slices.Contains(known, e) {
				known = append(known, e)
			}
		}
		slices.Sort(known)
	}
	if !slices.Contains(known, req.GetEntity()) {
		return nil, status.Error(codes.NotFound, fmt.Sprintf("%v %q (the handlers declare: %s)",
			ErrUnknownEntity, req.GetEntity(), strings.Join(known, ", ")))
	}
	return d.HostServer.GetState(ctx, req)
}
