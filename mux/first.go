package mux

import (
	"net"
	"syscall"
)

// First holds a client's first bytes, read before its stream is opened so
// that they travel with the open request (Session.Open). The zero First
// holds nothing. Release gives its buffer back; Bytes is invalid after.
type First struct {
	buf *[]byte
	n   int
}

// ReadFirst reads what conn's peer has sent so far, without waiting for
// more. Clients of most database and web protocols speak first (a
// PostgreSQL startup message, a TLS ClientHello), and their first bytes
// have usually arrived by the time the connection is accepted; sent with
// the open request, they reach the target one tunnel round trip sooner.
// When nothing has arrived (a protocol where the server speaks first) the
// First is empty and cost one system call. An error means the client reset
// the connection.
func ReadFirst(conn net.Conn) (First, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return First{}, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return First{}, nil
	}
	buf := copyBufs.Get().(*[]byte)
	n, err := readNow(rc, *buf)
	if n <= 0 || err != nil {
		copyBufs.Put(buf)
		return First{}, err
	}
	return First{buf: buf, n: n}, nil
}

// Bytes returns the bytes read; nil when none were.
func (f *First) Bytes() []byte {
	if f.buf == nil {
		return nil
	}
	return (*f.buf)[:f.n]
}

// Len is the number of bytes read.
func (f *First) Len() int { return f.n }

// Release gives the buffer back. Calling it again does nothing.
func (f *First) Release() {
	if f.buf != nil {
		copyBufs.Put(f.buf)
		f.buf, f.n = nil, 0
	}
}
