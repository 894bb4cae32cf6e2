package mux

import (
	"bytes"
	"net"
	"sync"
	"syscall"
)

// MaxFirst bounds the first bytes that travel with an open request (see
// ReadFirst). A TLS ClientHello, a PostgreSQL startup message or the head
// of an HTTP request fits; anything more follows the reply like any later
// data. The bound keeps small what a pending open holds in the agent's
// session buffer while the agent dials: a slow target cannot fill the
// buffer that every stream of the tunnel shares.
const MaxFirst = 4 << 10

// firstBufs holds MaxFirst-byte buffers for reading a client's first bytes
// (ReadFirst, and Session.OpenConn while an open waits).
var firstBufs = sync.Pool{New: func() any { b := make([]byte, MaxFirst); return &b }}

// ReadFirst reads what conn's peer has sent so far, at most MaxFirst
// bytes, without waiting for more. Clients of most database and web
// protocols speak first, and their first bytes have usually arrived by the
// time the connection is accepted; sent with the open request, they reach
// the target one tunnel round trip sooner. When nothing has arrived (a
// protocol where the server speaks first) it returns nil, having cost one
// system call. The slice is the caller's. An error means the client is gone
// (it reset the connection) or conn is closed.
func ReadFirst(conn net.Conn) ([]byte, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil
	}
	buf := firstBufs.Get().(*[]byte)
	defer firstBufs.Put(buf)
	n, err := readNow(rc, *buf)
	if n <= 0 || err != nil {
		return nil, err
	}
	return bytes.Clone((*buf)[:n]), nil
}
