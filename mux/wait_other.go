//go:build !unix

package mux

import (
	"errors"
	"syscall"
)

// readsReady: here a read cannot wait for data without a buffer, so a copy
// holds its buffer while its connection is idle.
const readsReady = false

// readReady is never called here (readsReady is false); it exists so that
// the copy loop compiles on every system.
func readReady(syscall.RawConn, **[]byte) ([]byte, error) {
	return nil, errors.New("readReady is not supported on this system")
}

// readNow reads nothing where a socket cannot be read without waiting: a
// client's first bytes are then read while the open waits for its reply
// (Session.OpenConn).
func readNow(syscall.RawConn, []byte) (int, error) { return 0, nil }
