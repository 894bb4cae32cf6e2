package mux

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpClose is TCP_CLOSE of the kernel's tcp_states.h: where a connected
// socket goes when a reset arrives.
const tcpClose = 7

// resetsSeen: a socket's reset can be noticed without reading it.
const resetsSeen = true

// waitReset waits, without reading any data, until the peer of the socket
// resets it, and returns syscall.ECONNRESET then (the socket's pending
// error, ECONNRESET or EPIPE, is taken: the connection is to be aborted); it returns the rc.Read
// error (a deadline) when it is stopped first. Each wake-up (new data, a
// FIN, the reset) costs one getsockopt, and data that waits unread wakes
// it only when more arrives.
func waitReset(rc syscall.RawConn) error {
	var reset error
	err := rc.Read(func(fd uintptr) bool {
		reset = resetOf(fd)
		return reset != nil
	})
	if reset != nil {
		return syscall.ECONNRESET
	}
	return err
}

// resetOf returns the error a reset left on the socket, nil if it was not
// reset. A connection closed cleanly both ways while we still hold it is in
// TCP_CLOSE too, but leaves no error behind.
func resetOf(fd uintptr) error {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != tcpClose {
		return nil
	}
	if soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && soerr != 0 {
		return syscall.Errno(soerr)
	}
	return nil
}

// sendQueueDrains reports whether the socket's unsent bytes stay under
// drainedUnsent: whether what the copy writes to it leaves at once, rather
// than piling up because the peer reads slowly or has stopped (a socket
// takes megabytes before its writes block). It is the stream window
// tuning's test of a reader (smux Stream.SetDrained).
func sendQueueDrains(rc syscall.RawConn) bool {
	drains := true
	rc.Control(func(fd uintptr) {
		if unsent, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQNSD); err == nil {
			drains = unsent < drainedUnsent
		}
	})
	return drains
}

// drainedUnsent is two copy chunks: a socket whose peer keeps up holds
// less unsent.
const drainedUnsent = 2 * copyBufSize
