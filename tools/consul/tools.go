//go:build tools

// Package tools pins the Consul agent that the local cluster and the tests run.
package tools

import _ "github.com/hashicorp/consul"
