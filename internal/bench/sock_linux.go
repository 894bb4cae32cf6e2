package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// watchReset blocks until c has a pending socket error (a reset from the
// peer: returned), its read deadline passes (nil) or it is closed (the
// error). It reads no data: the poller wakes it for new data too, and it
// goes back to waiting.
func watchReset(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	err = rc.Read(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			sockErr = err
		case v != 0:
			sockErr = syscall.Errno(v)
		}
		return sockErr != nil
	})
	if sockErr != nil {
		return fmt.Errorf("delay line: peer reset: %w", sockErr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// connState says, without blocking or consuming data, whether c is still
// open: data or nothing waiting is open; end of stream or an error is not.
func connState(c *net.TCPConn) (open bool, why string) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var (
		n    int
		rerr error
	)
	buf := make([]byte, 1)
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return false, err.Error()
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN):
		return true, ""
	case rerr != nil:
		return false, rerr.Error()
	case n == 0:
		return false, "end of stream"
	}
	return true, ""
}

// unreadBytes is how many bytes wait in c's receive queue (FIONREAD).
func unreadBytes(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	rc.Control(func(fd uintptr) {
		v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err == nil {
			n = v
		}
	})
	return n
}
