//go:build unix

package mux

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// readsReady: a socket's reads can wait for data before taking a buffer.
const readsReady = true

// readReady waits until the socket has data (or an end of file or an
// error) and reads it into *buf, taking a buffer from copyBufs only then:
// a connection waiting for data holds none. When the socket turns out to
// be drained, the buffer goes back to the pool before the wait, and at
// the end of data or on an error too. It returns the bytes read, or
// io.EOF.
func readReady(rc syscall.RawConn, buf **[]byte) ([]byte, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		if *buf == nil {
			*buf = copyBufs.Get().(*[]byte)
		}
		for {
			n, rerr = syscall.Read(int(fd), **buf)
			if !errors.Is(rerr, syscall.EINTR) {
				break
			}
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			copyBufs.Put(*buf)
			*buf = nil
			return false
		}
		return true
	})
	switch {
	case err == nil && rerr == nil && n > 0:
		return (**buf)[:n], nil
	case err == nil && rerr != nil:
		err = os.NewSyscallError("read", rerr)
	case err == nil:
		err = io.EOF
	}
	if *buf != nil {
		copyBufs.Put(*buf)
		*buf = nil
	}
	return nil, err
}

// readNow reads what the socket holds without waiting for more: 0 and no
// error when nothing is there yet.
func readNow(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			if !errors.Is(rerr, syscall.EINTR) {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, syscall.EAGAIN):
		return 0, nil
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	}
	return n, nil
}
