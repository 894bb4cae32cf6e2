//go:build !unix

package mux

import "syscall"

// waitReadable is a no-op where the socket cannot be peeked at: the copy
// then holds its buffer while it waits.
func waitReadable(syscall.RawConn) error { return nil }

// readNow reads nothing where a socket cannot be read without waiting: a
// client's first bytes then follow the open reply.
func readNow(syscall.RawConn, []byte) (int, error) { return 0, nil }
