package cli

import (
	"errors"

	"github.com/corralhq/corral/discovery"
)

// Explain is what a binary prints for an error it stops on: an
// unreachable Consul agent as one sentence saying where it looked and how
// to fix it, without the call chain around it; anything else as it is.
func Explain(err error) string {
	var ue *discovery.UnreachableError
	if errors.As(err, &ue) {
		return ue.Error() + ": start it, or point --consul (env CORRAL_CONSUL_ADDR) at a running agent"
	}
	return err.Error()
}
