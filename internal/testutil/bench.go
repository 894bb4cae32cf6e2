package testutil

import (
	"io"
	"net"
	"testing"
)

// BenchCopy writes b.N chunks of chunk bytes to w and reads them all from
// r: one benchmark op per chunk, b.SetBytes set, allocations reported.
func BenchCopy(b *testing.B, w, r net.Conn, chunk int) {
	buf := make([]byte, chunk)
	want := int64(b.N) * int64(chunk)
	done := make(chan error, 1)
	go func() {
		rb := make([]byte, 64<<10)
		var got int64
		for got < want {
			n, err := r.Read(rb)
			got += int64(n)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.SetBytes(int64(chunk))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchEcho sends one byte through c and reads it back, b.N times: one op
// per round trip. Whatever is at the other end must echo, and c must stay
// open until BenchEcho returns.
func BenchEcho(b *testing.B, c net.Conn) {
	one := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		one[0] = byte(i)
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		if one[0] != byte(i) {
			b.Fatalf("echo of %#x came back as %#x", byte(i), one[0])
		}
	}
}

// TCPPair is both ends of one loopback TCP connection: the listener's
// accepted end and the dialled one. Both are closed at cleanup.
func TCPPair(t testing.TB) (accepted, dialled *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); c.Close() })
	return a.(*net.TCPConn), c.(*net.TCPConn)
}
