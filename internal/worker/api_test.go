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
// none).
func TestGetStateRefusesBadRequests(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.ID = "w1"
	hs := staticHandlers{hs: map[string]host.HandlerInfo{"donor.give": {}, "stock.add": {Entity: "inventory"}}}
	view := newMembership(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	a := &API{id: "w1", intake: &jobIntake{cfg: cfg, plugins: hs, catalog: &handlerCatalog{self: "w1", local: hs, view: view}}}
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

// TestGetStateRefusesUnknownEntity: an entity no handler reads or writes
// is NotFound, with the known ones (declared or by prefix) named.
func TestGetStateRefusesUnknownEntity(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.ID = "w1"
	hs := staticHandlers{hs: map[string]host.HandlerInfo{"donor.give": {}, "stock.add": {Entity: "inventory"}}}
	view := newMembership(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	a := &API{id: "w1", intake: &jobIntake{cfg: cfg, plugins: hs, catalog: &handlerCatalog{self: "w1", local: hs, view: view}}}
	_, err := a.GetState(context.Background(), &workerpb.GetStateRequest{Entity: "stock", Keys: []string{"widget"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "donor, inventory") {
		t.Errorf("entity stock: %v, want NotFound naming donor, inventory", err)
	}
}
