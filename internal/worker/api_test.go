package worker

import (
	"context"
	"strings"
	"testing"

	"github.com/corralhq/corral/api/workerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestGetStateRefusesBadRequests: an empty entity type or an invalid key
// is InvalidArgument, answered before the store is read (nothing listens
// at this API's Redis address).
func TestGetStateRefusesBadRequests(t *testing.T) {
	t.Parallel()
	a := submitWorker(t, "127.0.0.1:1").API()
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
