package bench

import "syscall"

// childAttr kills a measured child when the bench process dies, so an
// interrupted run leaves no process behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
