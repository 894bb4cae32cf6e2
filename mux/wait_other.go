//go:build !unix

package mux

import "syscall"

// waitReadable is a no-op where the socket cannot be peeked at: the copy
// then holds its buffer while it waits.
func waitReadable(syscall.RawConn) error { return nil }
