package host

import (
	"errors"
	"testing"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// TestReservedHandlerName: a plugin may not declare a handler named like
// the worker's own jobs (~delete).
func TestReservedHandlerName(t *testing.T) {
	t.Parallel()
	descs := []*pluginpb.DescribeResponse{{Name: "p", Handlers: []*pluginpb.HandlerSpec{{Name: "a.b"}, {Name: "~delete"}}}}
	if _, err := buildRoutes([]*supervisor{{path: "/bin/p"}}, descs); !errors.Is(err, ErrReservedHandler) {
		t.Fatalf("buildRoutes = %v, want ErrReservedHandler", err)
	}
	descs[0].Handlers = descs[0].Handlers[:1]
	if rs, err := buildRoutes([]*supervisor{{path: "/bin/p"}}, descs); err != nil || len(rs) != 1 {
		t.Fatalf("buildRoutes = %v, %v", rs, err)
	}
}
