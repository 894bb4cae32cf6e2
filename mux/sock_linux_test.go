package mux

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockInfo reads our side's unread byte count and TCP state.
func sockInfo(t *testing.T, c net.Conn) (unread int, state uint8) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		unread, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
	})
	return unread, state
}

// TestWaitResetSeesReset: a peer that resets a connection whose data we
// have not read is seen without a read, whether the reset came before the
// wait began or (usually) while it waits.
func TestWaitResetSeesReset(t *testing.T) {
	for _, before := range []bool{false, true} {
		ours, peer := tcpPair(t)
		if _, err := peer.Write(make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { n, _ := sockInfo(t, ours); return n == 64<<10 })
		rc, _ := ours.(*net.TCPConn).SyscallConn()
		got := make(chan error, 1)
		if before {
			Reset(peer)
			waitFor(t, func() bool { _, st := sockInfo(t, ours); return st == tcpClose })
		}
		go func() { got <- waitReset(rc) }()
		Reset(peer)
		select {
		case err := <-got:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("reset before the wait %v: %v, want ECONNRESET", before, err)
			}
		case <-time.After(10 * time.Second):
			ours.SetReadDeadline(time.Unix(1, 0))
			<-got
			t.Fatalf("reset before the wait %v: not seen", before)
		}
	}
}

// TestWaitResetCleanClose: a connection closed cleanly both ways, with
// data still unread, is in the same TCP state as a reset one; it is not
// taken for a reset.
func TestWaitResetCleanClose(t *testing.T) {
	ours, peer := tcpPair(t)
	peer.Write([]byte("unread"))
	peer.(*net.TCPConn).CloseWrite()
	ours.(*net.TCPConn).CloseWrite()
	waitFor(t, func() bool { _, st := sockInfo(t, ours); return st == tcpClose })
	rc, _ := ours.(*net.TCPConn).SyscallConn()
	var err error
	rc.Control(func(fd uintptr) { err = resetOf(fd) })
	if err != nil {
		t.Fatalf("clean close taken for a reset: %v", err)
	}
}

// TestSendQueueDrains: a socket whose peer reads drains; one whose peer
// has stopped reading piles up unsent bytes once its peer's window is full.
func TestSendQueueDrains(t *testing.T) {
	ours, peer := tcpPair(t)
	rc, _ := ours.(*net.TCPConn).SyscallConn()
	if !sendQueueDrains(rc) {
		t.Fatal("an idle socket does not drain")
	}
	// The peer stops reading: fill its window and more.
	for {
		// A write blocks only once the send buffer is full.
		ours.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := ours.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	if sendQueueDrains(rc) {
		t.Fatal("a socket whose peer stopped reading drains")
	}
	ours.SetWriteDeadline(time.Time{})
	// The peer reads it all: nothing waits any more.
	go io.Copy(io.Discard, peer)
	waitFor(t, func() bool { return sendQueueDrains(rc) })
}
