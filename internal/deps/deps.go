// Package deps pins the modules the job path is built on, so that
// `go mod tidy` keeps their versions while packages come and go.
package deps

import (
	_ "github.com/buraksezer/consistent"
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/hashicorp/consul/api"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/go-plugin"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/sony/gobreaker/v2"
	_ "google.golang.org/grpc"
	_ "google.golang.org/protobuf/proto"
)
