package testenv

import "syscall"

// sysProcAttr makes the server die with the process that started it, so a
// test binary killed by a timeout leaves no servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
