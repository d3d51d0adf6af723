//go:build linux

package host

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel SIGKILL the plugin when the worker dies, even
// by SIGKILL, so no orphaned plugin outlives it. (Strictly, when the thread
// that forked it exits; Go only ends threads of locked goroutines.)
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// processGone reports whether no process has the id pid, so the cache
// folder of the worker that had it can go. A process of another user
// (EPERM) is there.
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}
