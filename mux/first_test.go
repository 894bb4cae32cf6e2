//go:build unix

package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// acceptedPair is a client and the server's accepted end of one TCP
// connection.
func acceptedPair(t *testing.T) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	srv, cl := tcpPair(t)
	t.Cleanup(func() { srv.Close(); cl.Close() })
	return cl.(*net.TCPConn), srv
}

// readFirstSoon polls ReadFirst until it returns bytes or an error: the
// test's own writes cross loopback asynchronously.
func readFirstSoon(t *testing.T, conn net.Conn) ([]byte, error) {
	t.Helper()
	var b []byte
	var err error
	waitFor(t, func() bool {
		b, err = ReadFirst(conn)
		return err != nil || len(b) > 0
	})
	return b, err
}

func TestReadFirst(t *testing.T) {
	t.Run("nothing sent yet", func(t *testing.T) {
		_, srv := acceptedPair(t)
		if b, err := ReadFirst(srv); err != nil || b != nil {
			t.Fatalf("ReadFirst = %q, %v; want nothing, no error", b, err)
		}
	})
	t.Run("bytes waiting", func(t *testing.T) {
		cl, srv := acceptedPair(t)
		cl.Write([]byte("GET / HTTP/1.1\r\n"))
		b, err := readFirstSoon(t, srv)
		if err != nil || string(b) != "GET / HTTP/1.1\r\n" {
			t.Fatalf("ReadFirst = %q, %v", b, err)
		}
	})
	t.Run("at most MaxFirst, the rest stays", func(t *testing.T) {
		cl, srv := acceptedPair(t)
		sent := make([]byte, MaxFirst+100)
		for i := range sent {
			sent[i] = byte(i)
		}
		cl.Write(sent)
		var got []byte
		waitFor(t, func() bool { // until the whole write has arrived
			b, err := ReadFirst(srv)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
			return len(got) >= len(sent)
		})
		if !bytes.Equal(got, sent) {
			t.Fatalf("reads in pieces of at most %d bytes gave %d bytes, not what was sent", MaxFirst, len(got))
		}
		cl.Write(sent)
		b, _ := readFirstSoon(t, srv)
		if len(b) > MaxFirst {
			t.Fatalf("ReadFirst returned %d bytes, more than MaxFirst (%d)", len(b), MaxFirst)
		}
	})
	t.Run("bytes then end of data", func(t *testing.T) {
		cl, srv := acceptedPair(t)
		cl.Write([]byte("ping"))
		cl.CloseWrite()
		b, err := readFirstSoon(t, srv)
		if err != nil || string(b) != "ping" {
			t.Fatalf("ReadFirst = %q, %v", b, err)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := srv.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after ReadFirst = %d, %v; want the end of data", n, err)
		}
	})
	t.Run("reset is an error", func(t *testing.T) {
		cl, srv := acceptedPair(t)
		cl.SetLinger(0)
		cl.Close()
		_, err := readFirstSoon(t, srv)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("ReadFirst after a reset = %v, want ECONNRESET", err)
		}
	})
	t.Run("closed connection", func(t *testing.T) {
		_, srv := acceptedPair(t)
		srv.Close()
		if _, err := ReadFirst(srv); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFirst on a closed conn = %v, want net.ErrClosed", err)
		}
	})
}

// TestReadReady: the copy's read gives each chunk intact, the end of data
// as io.EOF and a reset as an error, and holds no buffer after any of the
// last two.
func TestReadReady(t *testing.T) {
	cl, srv := acceptedPair(t)
	rc, err := srv.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var buf *[]byte
	got := make(chan string)
	read := func() {
		b, err := readReady(rc, &buf)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b)
	}
	go read() // waits: nothing has been sent
	cl.Write([]byte("hello"))
	if g := <-got; g != "hello" {
		t.Fatalf("first read = %q", g)
	}
	cl.Write([]byte("again"))
	go read()
	if g := <-got; g != "again" {
		t.Fatalf("second read = %q", g)
	}
	cl.CloseWrite()
	if b, err := readReady(rc, &buf); err != io.EOF || b != nil || buf != nil {
		t.Fatalf("at the end of data: %q, %v, buffer held %v; want io.EOF and no buffer", b, err, buf != nil)
	}

	cl2, srv2 := acceptedPair(t)
	rc2, _ := srv2.(*net.TCPConn).SyscallConn()
	cl2.SetLinger(0)
	cl2.Close()
	var buf2 *[]byte
	if _, err := readReady(rc2, &buf2); !errors.Is(err, syscall.ECONNRESET) || buf2 != nil {
		t.Fatalf("after a reset: %v, buffer held %v; want ECONNRESET and no buffer", err, buf2 != nil)
	}
}
