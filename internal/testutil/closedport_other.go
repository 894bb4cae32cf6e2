//go:build !unix

package testutil

import (
	"net"
	"testing"
)

// ClosedAddr returns a 127.0.0.1 address that refuses connections: here,
// the port of a listener closed at once (another listener may take it).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
