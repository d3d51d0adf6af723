//go:build !linux

package host

import "os/exec"

// dieWithParent is a no-op where the kernel has no parent-death signal; a
// gracefully stopping worker still kills its plugins in Stop.
func dieWithParent(*exec.Cmd) {}

// processGone does not know here: leftover cache folders are kept.
func processGone(int) bool { return false }
