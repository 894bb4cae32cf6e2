package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countingConn records the size of every Write that reaches the tunnel
// connection, which is one WebSocket message in production.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) sizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.writes...)
}

// readAll reads n bytes from r in the background.
func readAll(r io.Reader, n int) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		got, _ := io.ReadFull(r, b)
		ch <- b[:got]
	}()
	return ch
}

// Frames written while a batch is on the wire leave together, intact and
// in order, as one write.
func TestWatchedConnBatchesWhileBusy(t *testing.T) {
	a, b := net.Pipe() // a write blocks until the peer reads it
	defer b.Close()
	cc := &countingConn{Conn: a}
	wc := newWatchedConn(cc)
	defer wc.Close()

	first := bytes.Repeat([]byte{1}, maxDirect+1) // bulk: goes to the flusher
	if _, err := wc.Write(first); err != nil {
		t.Fatal(err)
	}
	// The flusher is now blocked writing first: nobody reads b yet.
	waitFor(t, func() bool { return len(cc.sizes()) == 1 })
	var want bytes.Buffer
	want.Write(first)
	for i := range 10 {
		frame := bytes.Repeat([]byte{byte(i + 2)}, 8+i)
		if _, err := wc.WriteBuffers([][]byte{frame[:8], frame[8:]}); err != nil {
			t.Fatal(err)
		}
		want.Write(frame)
	}
	got := <-readAll(b, want.Len())
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("bytes changed on the way: got %d bytes, want %d", len(got), want.Len())
	}
	if s := cc.sizes(); len(s) != 2 || s[1] != want.Len()-len(first) {
		t.Fatalf("writes reaching the connection = %v, want [%d %d]: the ten frames should travel as one batch", s, len(first), want.Len()-len(first))
	}
}

// A small frame on an idle connection is written before Write returns, on
// the caller's goroutine: a request/response exchange waits for no hand-off.
func TestWatchedConnSmallFrameDirect(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	cc := &countingConn{Conn: a}
	wc := newWatchedConn(cc)
	defer wc.Close()
	got := readAll(b, 9)
	if _, err := wc.WriteBuffers([][]byte{[]byte("hdr:0001;"), nil}); err != nil {
		t.Fatal(err)
	}
	if s := cc.sizes(); len(s) != 1 || s[0] != 9 {
		t.Fatalf("writes reaching the connection when Write returned = %v, want [9]", s)
	}
	if g := <-got; string(g) != "hdr:0001;" {
		t.Fatalf("peer read %q", g)
	}
}

// Frames written while the connection is held leave together, as one
// write, when it is released (an open's SYN and request).
func TestWatchedConnHoldGathers(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	cc := &countingConn{Conn: a}
	wc := newWatchedConn(cc)
	defer wc.Close()
	got := readAll(b, 27)
	release := wc.hold()
	for _, f := range []string{"syn:0001;", "open request frame"} {
		if _, err := wc.WriteBuffers([][]byte{[]byte(f[:4]), []byte(f[4:])}); err != nil {
			t.Fatal(err)
		}
	}
	if s := cc.sizes(); len(s) != 0 {
		t.Fatalf("writes reaching the connection while held = %v, want none", s)
	}
	release()
	if g := <-got; string(g) != "syn:0001;open request frame" {
		t.Fatalf("peer read %q", g)
	}
	if s := cc.sizes(); len(s) != 1 || s[0] != 27 {
		t.Fatalf("writes reaching the connection = %v, want one of 27 bytes", s)
	}
}

// Release returns at once even when the peer has stopped reading: an open
// must not block on a stuck tunnel beyond its own deadline.
func TestWatchedConnReleaseDoesNotBlock(t *testing.T) {
	a, b := net.Pipe() // nobody reads b until the end
	defer b.Close()
	wc := newWatchedConn(a)
	defer wc.Close()
	if _, err := wc.Write(bytes.Repeat([]byte{1}, maxDirect+1)); err != nil { // the flusher blocks on it
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		release := wc.hold()
		wc.Write([]byte("syn"))
		wc.Write([]byte("request"))
		release()
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("release blocked on a peer that does not read")
	}
	if got := <-readAll(b, maxDirect+1+len("synrequest")); len(got) != maxDirect+1+len("synrequest") {
		t.Fatalf("peer read %d bytes", len(got))
	}
}

// A hold does not stall other writers: each batch that fills up is written.
func TestWatchedConnHoldDoesNotBlockBulk(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	wc := newWatchedConn(a)
	defer wc.Close()
	release := wc.hold()
	const total = 4 * maxPending
	got := readAll(b, total)
	wrote := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for n := 0; n < total; n += len(chunk) {
			if _, err := wc.Write(chunk); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("bulk writes stalled behind a hold")
	}
	release()
	if g := <-got; len(g) != total {
		t.Fatalf("peer read %d bytes, want %d", len(g), total)
	}
}

// A peer that stops reading pushes back: Write blocks once maxPending bytes
// wait, and resumes when the peer reads.
func TestWatchedConnPushesBack(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	wc := newWatchedConn(a)
	defer wc.Close()

	chunk := make([]byte, 32<<10)
	wrote := make(chan int, 1)
	go func() {
		n := 0
		for n < 3*maxPending {
			if _, err := wc.Write(chunk); err != nil {
				break
			}
			n += len(chunk)
		}
		wrote <- n
	}()
	select {
	case n := <-wrote:
		t.Fatalf("wrote %d bytes to a peer that reads nothing; want Write to block", n)
	case <-time.After(200 * time.Millisecond):
	}
	got := <-readAll(b, 3*maxPending)
	if len(got) != 3*maxPending {
		t.Fatalf("peer read %d bytes, want %d", len(got), 3*maxPending)
	}
	if n := <-wrote; n != 3*maxPending {
		t.Fatalf("writer stopped after %d bytes", n)
	}
}

// Close writes what was already accepted before closing.
func TestWatchedConnCloseFlushes(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	wc := newWatchedConn(a)
	msg := bytes.Repeat([]byte("goaway: last words before the close. "), 1000) // queued, not direct
	got := readAll(b, len(msg))
	if _, err := wc.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	if g := <-got; !bytes.Equal(g, msg) {
		t.Fatalf("peer got %q, want %q", g, msg)
	}
	if _, err := wc.Write(msg); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// Close does not hang on a peer that never reads, and a writer blocked by
// back-pressure is released.
func TestWatchedConnCloseStuckPeer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	wc := newWatchedConn(a)
	chunk := make([]byte, maxPending)
	wc.Write(chunk) // taken by the flusher, which blocks on the pipe
	waitFor(t, func() bool {
		wc.mu.Lock()
		defer wc.mu.Unlock()
		return len(wc.pending) == 0
	})
	wc.Write(chunk) // pending
	blocked := make(chan error, 1)
	go func() {
		_, err := wc.Write(chunk) // waits for room
		blocked <- err
	}()
	start := time.Now()
	wc.Close()
	if d := time.Since(start); d > closeFlushTimeout+5*time.Second {
		t.Fatalf("Close took %s", d)
	}
	if err := <-blocked; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked Write returned %v, want net.ErrClosed", err)
	}
}

// A failed write ends the connection: later writes get the error, and the
// reader sees the connection closed.
func TestWatchedConnWriteError(t *testing.T) {
	a, b := net.Pipe()
	wc := newWatchedConn(a)
	defer wc.Close()
	b.Close() // the peer is gone: the flusher's write fails
	wc.Write([]byte("x"))
	waitFor(t, func() bool {
		_, err := wc.Write([]byte("y"))
		return err != nil && !errors.Is(err, net.ErrClosed)
	})
	if _, err := wc.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read after a failed write succeeded; want the connection closed")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
