//go:build !linux

package mux

import (
	"errors"
	"syscall"
)

// resetsSeen: here a socket's reset is noticed only by reading or writing
// it, so a connection whose stream waits for window notices its peer's
// reset once the window opens.
const resetsSeen = false

// waitReset is never called here (resetsSeen is false).
func waitReset(syscall.RawConn) error {
	return errors.New("waitReset is not supported on this system")
}

// sendQueueDrains cannot look at a socket's queue here: a copy's
// destination is taken to keep up.
func sendQueueDrains(syscall.RawConn) bool { return true }
