package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startTestLine runs an in-process delay line in front of to until the test
// ends.
func startTestLine(t *testing.T, cfg LineConfig) *DelayLine {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	d, err := ListenDelayLine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return d
}

// startServer accepts one connection at a time on loopback and runs serve
// on it, until the test ends.
func startServer(t *testing.T, serve func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dialLine(t *testing.T, d *DelayLine) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", d.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound on every test's reads and writes, so that a broken line
	// fails the test instead of hanging it; never a timing assertion.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// readPattern reads until EOF and checks every byte against the pattern
// from off; it returns the count.
func readPattern(c net.Conn, pat *Pattern, off int64) (int64, error) {
	buf := make([]byte, 64<<10)
	var got int64
	for {
		n, err := c.Read(buf)
		if n > 0 && !pat.Match(off+got, buf[:n]) {
			return got, ErrCorrupt
		}
		got += int64(n)
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

func writePattern(c net.Conn, pat *Pattern, off, n int64) error {
	for sent := int64(0); sent < n; {
		k := min(int64(chunk), n-sent)
		if _, err := c.Write(pat.At(off+sent, int(k))); err != nil {
			return err
		}
		sent += k
	}
	return nil
}

// TestDelayLineBytesIntact sends a pattern each way at once and checks
// every byte, with and without a rate cap; each side half-closes when done
// and the other still gets its bytes.
func TestDelayLineBytesIntact(t *testing.T) {
	t.Parallel()
	const upOff, downOff, size = 7, 1 << 30, 6 << 20
	for _, tc := range []struct {
		name string
		rtt  time.Duration
		rate int64
	}{
		{"uncapped", 10 * time.Millisecond, 0},
		{"capped", 4 * time.Millisecond, 200e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pat := NewPattern()
			srvErr := make(chan error, 1)
			addr := startServer(t, func(c *net.TCPConn) {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				var wg sync.WaitGroup
				var werr error
				wg.Go(func() {
					if werr = writePattern(c, pat, downOff, size); werr == nil {
						werr = c.CloseWrite()
					}
				})
				n, err := readPattern(c, pat, upOff)
				wg.Wait()
				if err == nil && n != size {
					err = errors.New("server: short upload")
				}
				srvErr <- errors.Join(err, werr)
			})
			d := startTestLine(t, LineConfig{To: addr, RTT: tc.rtt, Rate: tc.rate})
			c := dialLine(t, d)
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() {
				if werr = writePattern(c, pat, upOff, size); werr == nil {
					werr = c.CloseWrite()
				}
			})
			n, err := readPattern(c, pat, downOff)
			wg.Wait()
			if err != nil || werr != nil {
				t.Fatalf("client: read %v, write %v", err, werr)
			}
			if n != size {
				t.Fatalf("client read %d bytes, want %d", n, size)
			}
			if err := <-srvErr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDelayLineDelay checks lower bounds only: a round trip takes at least
// the line's RTT, and a capped transfer at least its bytes' time at the
// rate (less one read, which may leave at once).
func TestDelayLineDelay(t *testing.T) {
	t.Parallel()
	const rtt = 40 * time.Millisecond
	echo := startServer(t, func(c *net.TCPConn) { io.Copy(c, c) })
	d := startTestLine(t, LineConfig{To: echo, RTT: rtt})
	c := dialLine(t, d)
	one := make([]byte, 1)
	for i := range 5 {
		t0 := time.Now()
		if err := EchoByte(c, byte(i), one); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(t0); el < rtt {
			t.Errorf("round trip %d took %s, less than the line's %s", i, el, rtt)
		}
	}

	const rate, size = 20e6, 4 << 20
	pat := NewPattern()
	got := make(chan int64, 1)
	sink := startServer(t, func(c *net.TCPConn) {
		n, _ := readPattern(c, pat, 0)
		got <- n
	})
	capped := startTestLine(t, LineConfig{To: sink, RTT: 2 * time.Millisecond, Rate: rate})
	c = dialLine(t, capped)
	t0 := time.Now()
	if err := writePattern(c, pat, 0, size); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if n := <-got; n != size {
		t.Fatalf("sink read %d bytes, want %d", n, size)
	}
	min := time.Duration(float64(size-lineRead) / rate * float64(time.Second))
	if el := time.Since(t0); el < min {
		t.Errorf("%d bytes at %.0f B/s took %s, less than %s", size, rate, el, min)
	}
}

// TestDelayLineHalfClose: a client's half-close reaches the server after
// its data, and the server's answer still comes back, then its own EOF.
func TestDelayLineHalfClose(t *testing.T) {
	t.Parallel()
	addr := startServer(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return
		}
		c.Write(append([]byte("got "), b...))
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	d := startTestLine(t, LineConfig{To: addr, RTT: 10 * time.Millisecond})
	c := dialLine(t, d)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(b) != "got ping" {
		t.Fatalf("answer %q, want %q", b, "got ping")
	}
}

// readUntilErr reads c until an error and returns it.
func readUntilErr(c net.Conn) error {
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// TestDelayLineReset: a reset on either side resets the other (a read
// there fails with an error, not a clean EOF), also while the line's
// queue is full and it is not reading the side that resets.
func TestDelayLineReset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		fromSrv   bool // the server resets, else the client
		fillFirst bool // the client fills the line towards a server that does not read
	}{
		{"client", false, false},
		{"server", true, false},
		{"client with a full queue", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srvConn := make(chan *net.TCPConn, 1)
			srvDone := make(chan struct{})
			addr := startServer(t, func(c *net.TCPConn) {
				srvConn <- c
				<-srvDone
			})
			t.Cleanup(func() { close(srvDone) })
			d := startTestLine(t, LineConfig{To: addr, RTT: 10 * time.Millisecond, Queue: 1 << 20})
			c := dialLine(t, d)
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			s := <-srvConn
			s.SetDeadline(time.Now().Add(30 * time.Second))
			if tc.fillFirst {
				pat := NewPattern()
				c.SetWriteDeadline(time.Now().Add(time.Second))
				err := writePattern(c, pat, 0, 1<<30)
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("filling the line: %v, want the write deadline", err)
				}
			}
			victim := s
			if tc.fromSrv {
				resetConn(s)
				victim = c
			} else {
				resetConn(c)
			}
			if tc.fillFirst {
				// Reading the server would make room in the line, which
				// would then read the reset like any data: watch the
				// server's socket for the reset without reading instead.
				s.SetReadDeadline(time.Now().Add(10 * time.Second))
				if err := watchReset(s); err == nil {
					t.Fatal("the server saw no reset within 10s")
				}
				return
			}
			err := readUntilErr(victim)
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("after the reset the other side read %v, want a reset", err)
			}
		})
	}
}

// TestDelayLineQueueBound: towards a server that does not read, the line
// holds at most its queue, and every byte it held arrives once the server
// reads.
func TestDelayLineQueueBound(t *testing.T) {
	t.Parallel()
	const bound = 1 << 20
	pat := NewPattern()
	start := make(chan struct{})
	got := make(chan int64, 1)
	addr := startServer(t, func(c *net.TCPConn) {
		<-start
		n, err := readPattern(c, pat, 0)
		if err != nil {
			n = -1
		}
		got <- n
	})
	d := startTestLine(t, LineConfig{To: addr, RTT: 2 * time.Millisecond, Queue: bound})
	c := dialLine(t, d)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	var sent int64
	for {
		n, err := c.Write(pat.At(sent, chunk))
		sent += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	held := d.maxQueued
	d.mu.Unlock()
	if held > bound || held == 0 {
		t.Errorf("the line held up to %d bytes, want 1..%d", held, bound)
	}
	c.SetWriteDeadline(time.Time{})
	c.CloseWrite()
	close(start)
	if n := <-got; n != sent {
		t.Fatalf("server read %d bytes, the client wrote %d", n, sent)
	}
}
