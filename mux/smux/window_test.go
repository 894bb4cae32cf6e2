package smux

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Tests of Ferry's receive-window tuning (Config.MaxStreamWindow).

const (
	testBase = 256 << 10
	testMax  = 4 << 20
)

func tuningConfig(budget int) *Config {
	c := DefaultConfig()
	c.Version = 2
	c.MaxStreamBuffer = testBase
	c.MaxStreamWindow = testMax
	c.StreamWindowBudget = budget
	return c
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tuningSession is a session over one end of a pipe whose other end
// nobody reads or writes: the tests drive its streams' windows directly.
func tuningSession(t *testing.T, cfg *Config) (*Session, *fakeClock) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	clk := &fakeClock{t: time.Unix(1000, 0)}
	s, err := Server(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clk.now
	t.Cleanup(func() { s.Close() })
	return s, clk
}

func addStream(s *Session, id uint32) *stream {
	st := newStream(id, s.config.MaxFrameSize, s)
	s.streamLock.Lock()
	s.streams[id] = st
	s.streamLock.Unlock()
	return st
}

// epoch has the stream receive and consume n bytes over elapsed, then
// ends the epoch the way a read's window update does, leaving behind
// bytes unread.
func epoch(st *stream, clk *fakeClock, n, behind uint32, elapsed time.Duration) uint32 {
	clk.advance(elapsed)
	st.bufferLock.Lock()
	defer st.bufferLock.Unlock()
	st.numRecv += n + behind
	st.numRead += n
	w := st.nextWindow(st.numRead)
	st.numRecv -= behind // the test keeps no bytes; only the counters matter
	return w
}

func TestWindowGrowsWhileItLimitsTheStream(t *testing.T) {
	s, clk := tuningSession(t, tuningConfig(64<<20))
	s.SetRTT(50 * time.Millisecond)
	st := addStream(s, 3)
	// A window per round trip (plus a little): surely window-limited.
	w := epoch(st, clk, testBase, 0, 60*time.Millisecond)
	if w != 1<<20 {
		t.Fatalf("window %d after a window in 1.2 round trips, want 1 MiB (x4)", w)
	}
	// A window in 2.4 round trips: probably window-limited.
	if w = epoch(st, clk, w, 0, 120*time.Millisecond); w != 2<<20 {
		t.Fatalf("window %d after a window in 2.4 round trips, want 2 MiB (x2)", w)
	}
	for range 3 {
		w = epoch(st, clk, w, 0, 60*time.Millisecond)
	}
	if w != testMax {
		t.Fatalf("window %d, want the maximum %d", w, testMax)
	}
	if got := s.WindowGrown(); got != testMax-testBase {
		t.Fatalf("budget used %d, want %d", got, testMax-testBase)
	}
	// A burst: half a window still unread when the epoch ends is no sign
	// of a slow reader.
	if w = epoch(st, clk, w, w/2, 60*time.Millisecond); w != testMax {
		t.Fatalf("window %d after a burst, want %d kept", w, testMax)
	}
}

// TestWindowFollowsTheDestination: a reader whose destination does not
// drain (a socket whose peer stopped reading, filling its buffers) looks
// fast while the buffers fill; its window does not grow, and shrinks.
func TestWindowFollowsTheDestination(t *testing.T) {
	s, clk := tuningSession(t, tuningConfig(64<<20))
	s.SetRTT(50 * time.Millisecond)
	st := addStream(s, 3)
	drained := true
	st.SetDrained(func() bool { return drained })
	w := epoch(st, clk, testBase, 0, 60*time.Millisecond)
	if w != 1<<20 {
		t.Fatalf("window %d while the destination drains, want 1 MiB", w)
	}
	drained = false
	if w = epoch(st, clk, w, 0, 60*time.Millisecond); w != 512<<10 {
		t.Fatalf("window %d while the destination fills, want 512 KiB", w)
	}
	if got := s.WindowGrown(); got != 512<<10-testBase {
		t.Fatalf("budget used %d, want %d", got, 512<<10-testBase)
	}
}

func TestWindowStaysWithoutRTT(t *testing.T) {
	s, clk := tuningSession(t, tuningConfig(64<<20))
	st := addStream(s, 3)
	for range 4 {
		if w := epoch(st, clk, testBase, 0, time.Millisecond); w != testBase {
			t.Fatalf("window %d without a round-trip estimate, want %d", w, testBase)
		}
	}
}

// TestWindowShrinksAfterTheReaderStops: a reader that stops holds its
// window (no epoch ends); when it reads again, slowly, the window shrinks,
// and the credit already given is never taken back.
func TestWindowShrinksAfterTheReaderStops(t *testing.T) {
	s, clk := tuningSession(t, tuningConfig(64<<20))
	s.SetRTT(50 * time.Millisecond)
	st := addStream(s, 3)
	w := uint32(testBase)
	for w < testMax {
		w = epoch(st, clk, w, 0, 60*time.Millisecond)
	}
	limit := st.recvLimit
	// Stopped for a minute, then a quarter window at a time, slowly.
	clk.advance(time.Minute)
	for range 4 {
		w = epoch(st, clk, testMax/4, 0, time.Second)
	}
	if w != testMax/2 {
		t.Fatalf("window %d after a window read in 61 s, want %d", w, testMax/2)
	}
	if got := s.WindowGrown(); got != testMax/2-testBase {
		t.Fatalf("budget used %d, want %d", got, testMax/2-testBase)
	}
	if int32(st.recvLimit-limit) < 0 {
		t.Fatalf("receive limit went down from %d to %d: credit already given was taken back", limit, st.recvLimit)
	}
}

func TestWindowShrinksWhenLittleOfItIsUsed(t *testing.T) {
	s, clk := tuningSession(t, tuningConfig(64<<20))
	s.SetRTT(10 * time.Millisecond)
	st := addStream(s, 3)
	w := uint32(testBase)
	for range 2 {
		w = epoch(st, clk, w, 0, 25*time.Millisecond)
	}
	if w != 1<<20 {
		t.Fatalf("window %d, want 1 MiB", w)
	}
	// A window in 40 round trips.
	w = epoch(st, clk, w, 0, 400*time.Millisecond)
	if w != 512<<10 {
		t.Fatalf("window %d for a stream that uses little of it, want 512 KiB", w)
	}
	// Between the two rules (a window in 10 round trips): kept.
	w = epoch(st, clk, w, 0, 100*time.Millisecond)
	if w != 512<<10 {
		t.Fatalf("window %d for a steady stream, want 512 KiB kept", w)
	}
	// A quarter window, however fast, ends no epoch: a reader draining a
	// backlog in one burst is no sign of a fast link.
	for range 3 {
		if w = epoch(st, clk, w/4, 0, time.Microsecond); w != 512<<10 {
			t.Fatalf("window %d after a quarter window, want 512 KiB kept", w)
		}
	}
}

func TestWindowGrowthStaysWithinTheBudget(t *testing.T) {
	budget := testMax - testBase + testBase // one stream at the maximum, and one more base window
	s, clk := tuningSession(t, tuningConfig(budget))
	s.SetRTT(50 * time.Millisecond)
	a, b := addStream(s, 3), addStream(s, 5)
	wa, wb := uint32(testBase), uint32(testBase)
	for range 8 {
		wa = epoch(a, clk, wa, 0, time.Millisecond)
		wb = epoch(b, clk, wb, 0, time.Millisecond)
		if got := s.WindowGrown(); got > budget {
			t.Fatalf("budget used %d, over %d", got, budget)
		}
	}
	if int(wa-testBase)+int(wb-testBase) != budget {
		t.Fatalf("windows %d and %d: growth %d, want the whole budget %d", wa, wb, int(wa-testBase)+int(wb-testBase), budget)
	}
	// The first stream ends: its growth goes back and the other takes it.
	s.streamClosed(a.id)
	if got := s.WindowGrown(); got != int(wb-testBase) {
		t.Fatalf("budget used %d after a stream ended, want %d", got, wb-testBase)
	}
	for range 4 {
		wb = epoch(b, clk, wb, 0, time.Millisecond)
	}
	if wb != testMax {
		t.Fatalf("window %d after the budget came back, want %d", wb, testMax)
	}
	s.Close()
	if got := s.WindowGrown(); got != 0 {
		t.Fatalf("budget used %d after the session closed, want 0", got)
	}
}

func TestPushBeyondTheWindowIsRefused(t *testing.T) {
	s, _ := tuningSession(t, tuningConfig(0))
	st := addStream(s, 3)
	buf := make([]byte, initialPeerWindow)
	if !st.pushBytes(&buf) {
		t.Fatal("the initial window was refused")
	}
	one := make([]byte, 1)
	if st.pushBytes(&one) {
		t.Fatal("a byte beyond the initial window was kept")
	}
}

// TestPeerOverrunningTheWindowEndsTheSession: a peer that ignores flow
// control is cut off, rather than buffered without bound.
func TestPeerOverrunningTheWindowEndsTheSession(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	s, err := Server(a, tuningConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() {
		frame := func(cmd byte, sid uint32, data []byte) []byte {
			h := make([]byte, headerSize)
			h[0], h[1] = 2, cmd
			h[2], h[3] = byte(len(data)), byte(len(data)>>8)
			h[4], h[5], h[6], h[7] = byte(sid), byte(sid>>8), byte(sid>>16), byte(sid>>24)
			return append(h, data...)
		}
		if _, err := b.Write(frame(cmdSYN, 1, nil)); err != nil {
			return
		}
		data := make([]byte, 32<<10)
		for range initialPeerWindow/len(data) + 1 {
			if _, err := b.Write(frame(cmdPSH, 1, data)); err != nil {
				return
			}
		}
	}()
	if _, err := s.AcceptStream(); err != nil {
		t.Fatal(err)
	}
	_, err = s.AcceptStream()
	if !errors.Is(err, ErrWindowExceeded) {
		t.Fatalf("accept after the overrun: %v, want ErrWindowExceeded", err)
	}
}

// TestStalledStreamsDoNotBlockTheSession: with per-stream flow control,
// streams whose reader never reads fill their own windows and no more;
// another stream still moves all its bytes. (Upstream's shared
// MaxReceiveBuffer would stop the session's reader here: 40 stalled
// streams hold 10 MiB.)
func TestStalledStreamsDoNotBlockTheSession(t *testing.T) {
	cliConn, srvConn := tcpPair(t)
	srv, err := Server(srvConn, tuningConfig(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := Client(cliConn, tuningConfig(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	const stalled = 40
	const total = 32 << 20
	// The server accepts the stalled streams and never reads them, then
	// reads the fast one; everything it waits for is behind the session's
	// reader, so it runs beside the test's timeout.
	done := make(chan error, 1)
	var n int64
	go func() {
		for range stalled {
			if _, err := srv.AcceptStream(); err != nil {
				done <- err
				return
			}
		}
		fastSrv, err := srv.AcceptStream()
		if err == nil {
			n, err = io.Copy(io.Discard, fastSrv)
		}
		done <- err
	}()
	var writers sync.WaitGroup
	for range stalled {
		st, err := cli.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		writers.Add(1)
		go func() {
			defer writers.Done()
			st.Write(make([]byte, 1<<20)) // blocks at the window until Close
		}()
	}
	fast, err := cli.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	writers.Add(1)
	go func() {
		defer writers.Done()
		fast.Write(make([]byte, total))
		fast.CloseWrite()
	}()
	select {
	case err := <-done:
		if err != nil || n != total {
			t.Fatalf("fast stream: %d bytes, %v; want %d", n, err, total)
		}
	case <-time.After(60 * time.Second):
		cli.Close()
		writers.Wait()
		t.Fatal("the fast stream stalled behind streams whose reader never reads")
	}
	// What the stalled streams hold stays within their windows.
	srv.streamLock.Lock()
	var held uint32
	for _, st := range srv.streams {
		st.bufferLock.Lock()
		held += st.numRecv - st.numRead
		st.bufferLock.Unlock()
	}
	srv.streamLock.Unlock()
	if limit := uint32(stalled * initialPeerWindow); held > limit {
		t.Fatalf("stalled streams hold %d bytes, more than their windows (%d)", held, limit)
	}
	cli.Close()
	writers.Wait()
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// TestShrinkBindsOneUpdateLater: a sender stores an update's consumed
// count before its window, and may compute its credit from the new count
// and the previous window. After a shrink the receiver still accepts
// that much, so an honest sender is never cut off.
func TestShrinkBindsOneUpdateLater(t *testing.T) {
	s, clk := tuningSession(t, tuningConfig(64<<20))
	s.SetRTT(50 * time.Millisecond)
	st := addStream(s, 3)
	drained := true
	st.SetDrained(func() bool { return drained })
	w := epoch(st, clk, testBase, 0, 60*time.Millisecond)
	if w != 1<<20 {
		t.Fatalf("window %d, want 1 MiB", w)
	}
	drained = false
	w = epoch(st, clk, w, 0, 60*time.Millisecond)
	if w != 512<<10 {
		t.Fatalf("window %d after a shrink, want 512 KiB", w)
	}
	if got, want := st.recvLimit, st.numRead+1<<20; got != want {
		t.Fatalf("receive limit %d after the shrink, want consumed + the previous window %d", got, want)
	}
	// The torn credit arrives in full and is kept.
	buf := make([]byte, 1<<20)
	if !st.pushBytes(&buf) {
		t.Fatal("bytes within consumed + the previous window were refused")
	}
}

// TestLargestWindowDoesNotWrap: at the largest window allowed, growth
// stops there; it does not wrap to nothing.
func TestLargestWindowDoesNotWrap(t *testing.T) {
	cfg := tuningConfig(maxWindow)
	cfg.MaxStreamWindow = maxWindow
	s, clk := tuningSession(t, cfg)
	s.SetRTT(50 * time.Millisecond)
	st := addStream(s, 3)
	w := uint32(testBase)
	for range 12 {
		next := epoch(st, clk, w, 0, 60*time.Millisecond)
		if next < w {
			t.Fatalf("window went from %d down to %d while it limited the stream", w, next)
		}
		w = next
	}
	if w != maxWindow {
		t.Fatalf("window %d, want the largest, %d", w, maxWindow)
	}
}
