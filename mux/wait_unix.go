//go:build unix

package mux

import (
	"errors"
	"os"
	"syscall"
)

// waitReadable blocks until the socket has data, an end of file or an
// error to report, without reading anything. An error the peek sees (a
// reset) is returned: the peek consumes it, so a later read would only see
// an end of file.
func waitReadable(rc syscall.RawConn) error {
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) {
			return false
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			perr = os.NewSyscallError("recvfrom", err)
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}

// readNow reads what the socket holds without waiting for more: 0 and no
// error when nothing is there yet.
func readNow(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), b)
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EINTR):
		return 0, nil
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	}
	return n, nil
}
