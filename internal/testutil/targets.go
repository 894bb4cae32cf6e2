package testutil

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// listen opens a TCP listener on 127.0.0.1:0 closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// acceptEach accepts connections on ln until it is closed and runs handle
// on each in a goroutine of its own. wg counts the loop and every handler.
func acceptEach(ln net.Listener, wg *sync.WaitGroup, handle func(net.Conn)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
}

// EchoServer copies everything it reads back to the sender until EOF, then
// half-closes its side (CloseWrite), so a client that half-closes gets all
// its bytes back and then a clean EOF.
type EchoServer struct {
	Addr string

	ln       net.Listener
	wg       sync.WaitGroup
	accepted atomic.Int64
	cleanEOF atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	errs     []error
}

// NewEchoServer starts an echo server on 127.0.0.1:0, stopped at cleanup.
func NewEchoServer(t testing.TB) *EchoServer {
	t.Helper()
	return NewEchoServerOn(t, listen(t))
}

// NewEchoServerOn is NewEchoServer on a listener of the caller's (one in a
// namespace, say); it closes ln at cleanup.
func NewEchoServerOn(t testing.TB, ln net.Listener) *EchoServer {
	t.Helper()
	s := &EchoServer{ln: ln, Addr: ln.Addr().String()}
	acceptEach(ln, &s.wg, func(c net.Conn) {
		s.accepted.Add(1)
		s.serve(c.(*net.TCPConn))
	})
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *EchoServer) serve(c *net.TCPConn) {
	defer c.Close()
	_, err := io.Copy(c, c)
	if err != nil {
		s.failed.Add(1)
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
		return
	}
	// Counted before CloseWrite: a client that saw our EOF sees the count.
	s.cleanEOF.Add(1)
	c.CloseWrite()
	// Wait for the client's side to go, so we close last and without RST.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// Accepted is how many connections the server accepted.
func (s *EchoServer) Accepted() int64 { return s.accepted.Load() }

// CleanEOF is how many connections ended with a clean EOF from the client
// after all data was echoed.
func (s *EchoServer) CleanEOF() int64 { return s.cleanEOF.Load() }

// Errors are the errors connections ended with instead of EOF.
func (s *EchoServer) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// CountingListener accepts connections, counts them and closes them. It is
// the target that must never be reached.
type CountingListener struct {
	Addr     string
	ln       net.Listener
	accepted atomic.Int64
	done     chan struct{}
}

// NewCountingListener starts a counting listener on 127.0.0.1:0, stopped at
// cleanup.
func NewCountingListener(t testing.TB) *CountingListener {
	t.Helper()
	return NewCountingListenerOn(t, listen(t))
}

// NewCountingListenerOn is NewCountingListener on a listener of the
// caller's; it closes ln at cleanup.
func NewCountingListenerOn(t testing.TB, ln net.Listener) *CountingListener {
	t.Helper()
	l := &CountingListener{ln: ln, Addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.ln.Close()
		<-l.done
	})
	return l
}

// Accepted is how many connections were accepted.
func (l *CountingListener) Accepted() int64 { return l.accepted.Load() }

// WriterServer writes an endless stream to each connection until a write
// fails, and reports that error on Ended. It stands for a long response.
type WriterServer struct {
	Addr string
	// Ended receives, for each connection, the error its writes ended with.
	Ended chan error
	// Written is the total of bytes written on all connections.
	Written atomic.Int64

	ln net.Listener
	wg sync.WaitGroup
}

// NewWriterServer starts an endless writer on 127.0.0.1:0, stopped at
// cleanup.
func NewWriterServer(t testing.TB) *WriterServer {
	t.Helper()
	return NewWriterServerOn(t, listen(t))
}

// NewWriterServerOn is NewWriterServer on a listener of the caller's; it
// closes ln at cleanup.
func NewWriterServerOn(t testing.TB, ln net.Listener) *WriterServer {
	t.Helper()
	s := &WriterServer{ln: ln, Addr: ln.Addr().String(), Ended: make(chan error, 64)}
	acceptEach(ln, &s.wg, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 32<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for {
			n, err := c.Write(buf)
			s.Written.Add(int64(n))
			if err != nil {
				select {
				case s.Ended <- err:
				default:
				}
				return
			}
		}
	})
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

// HoldServer accepts connections and never reads them: a target that has
// stopped reading. It keeps them open until Reset or the cleanup.
type HoldServer struct {
	Addr string

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []*net.TCPConn
}

// NewHoldServer starts a holding target on 127.0.0.1:0, stopped at cleanup.
func NewHoldServer(t testing.TB) *HoldServer {
	t.Helper()
	s := &HoldServer{ln: listen(t)}
	s.Addr = s.ln.Addr().String()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c.(*net.TCPConn))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
		s.Reset(s.Held())
	})
	return s
}

// Held is how many connections it holds.
func (s *HoldServer) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Reset resets (linger 0) the n connections it accepted first and stops
// holding them.
func (s *HoldServer) Reset(n int) {
	s.mu.Lock()
	n = min(n, len(s.conns))
	reset := s.conns[:n]
	s.conns = s.conns[n:]
	s.mu.Unlock()
	for _, c := range reset {
		c.SetLinger(0)
		c.Close()
	}
}

// Flood writes to each of its connections without end, until a write
// fails: clients that send more than anyone reads.
type Flood struct {
	// Sent is the total of bytes written on all connections.
	Sent atomic.Int64
	// Failed receives, for each connection, the error its writes ended with.
	Failed chan error

	wg    sync.WaitGroup
	conns []net.Conn
}

// NewFlood starts no writer yet; the cleanup closes the connections it was
// given and waits for their writers.
func NewFlood(t testing.TB) *Flood {
	f := &Flood{Failed: make(chan error, 1024)}
	t.Cleanup(func() {
		for _, c := range f.conns {
			c.Close()
		}
		f.wg.Wait()
	})
	return f
}

// Start floods c. Not safe for concurrent use.
func (f *Flood) Start(c net.Conn) {
	f.conns = append(f.conns, c)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 16<<10)
		for {
			n, err := c.Write(buf)
			f.Sent.Add(int64(n))
			if err != nil {
				select {
				case f.Failed <- err:
				default:
				}
				return
			}
		}
	}()
}

// ServeHTTP starts an HTTP server with h on 127.0.0.1:0, stopped at cleanup,
// and returns its address.
func ServeHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// IsReset reports whether err is a TCP reset (ECONNRESET).
func IsReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
