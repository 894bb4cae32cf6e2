//go:build unix

package testutil

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// ClosedAddr returns a 127.0.0.1 address that refuses connections for the
// rest of the test: a socket bound there but not listening holds the port,
// so that no other listener (a parallel test's, say) can take it, as it
// could a port freed by closing a listener.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
