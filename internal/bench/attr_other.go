//go:build !linux

package bench

import "syscall"

// childAttr: without Pdeathsig, an interrupted run may leave a child behind;
// the bench reads /proc and is meant for Linux anyway.
func childAttr() *syscall.SysProcAttr { return nil }
