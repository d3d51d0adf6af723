package discovery_test

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/discovery"
)

// A unit test drives membership changes by hand; code under test sees them
// exactly as it would see Consul's.
func ExampleStatic() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	members := discovery.NewStatic(discovery.Member{ID: "worker-1", Address: "127.0.0.1:7101"})
	snapshots := members.Watch(ctx)
	fmt.Println(len((<-snapshots).Members), "member")

	members.Set(
		discovery.Member{ID: "worker-2", Address: "127.0.0.1:7102"},
		discovery.Member{ID: "worker-1", Address: "127.0.0.1:7101"},
	)
	for _, m := range (<-snapshots).Members {
		fmt.Println(m.ID, m.Address)
	}
	// Output:
	// 1 member
	// worker-1 127.0.0.1:7101
	// worker-2 127.0.0.1:7102
}
