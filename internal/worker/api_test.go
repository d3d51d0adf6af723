package worker

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/plugins/host"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestGetStateRefusesBadRequests: an empty entity type or an invalid key
// is InvalidArgument, answered before the store is read (this API has
// none; its catalog knows the entity donor).
func TestGetStateRefusesBadRequests(t *testing.T) {
	t.Parallel()
	local := staticHandlers{hs: map[string]host.HandlerInfo{"donor.donate": {}}}
	cfg := DefaultConfig()
	cfg.ID = "w1"
	a := &API{id: "w1", intake: &jobIntake{plugins: local,
		catalog: &handlerCatalog{self: "w1", local: local, view: newMembership(cfg, slog.Default())}}}
	for name, req := range map[string]*workerpb.GetStateRequest{
		"empty entity":       {Entity: "", Keys: []string{"alice"}},
		"empty key":          {Entity: "donor", Keys: []string{"alice", ""}},
		"key over the limit": {Entity: "donor", Keys: []string{strings.Repeat("k", MaxKeyBytes+1)}},
		"key not UTF-8":      {Entity: "donor", Keys: []string{"\xff"}},
	} {
		if _, err := a.GetState(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}
