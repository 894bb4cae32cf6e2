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
