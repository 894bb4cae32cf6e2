package mux

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// watchedConn is the tunnel connection as smux sees it.
//
// Reading, it keeps a tunnel's end from looking like a stream's clean end
// (smux hands the connection's read error to every stream, and io.EOF there
// would read as a FIN), and it records since when a read has been waiting,
// for the keepalive watchdog.
//
// Writing, it gathers frames: smux's send loop writes one frame per call,
// and each call on the tunnel connection is one WebSocket message, one TLS
// record and one system call. A small frame on an idle connection is
// written at once; otherwise Write copies the frame into a pending batch
// and returns, and the flusher goroutine writes the whole batch as one
// message whenever it is idle. Nothing waits for more data: frames that
// arrive while a message is being written travel together in the next one. Write blocks when
// maxPending bytes are waiting, so a slow link pushes back on smux as
// before.
//
// Close writes what smux has already handed over (for at most
// closeFlushTimeout), closes the connection and waits for the flusher.
type watchedConn struct {
	net.Conn
	readSince atomic.Int64 // unix nanoseconds when the pending read began; 0 when none

	mu      sync.Mutex
	space   sync.Cond // signalled when the pending batch has been taken
	pending []byte
	spare   []byte
	direct  []byte // the buffer of direct writes
	writing bool   // a message is being written (by the flusher or directly)
	held    int    // hold calls not yet released: frames wait in pending
	werr    error  // first write error, or net.ErrClosed after Close
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
	cerr    error
}

// maxPending bounds the bytes waiting for the flusher, and so the size of
// one WebSocket message. The two batch buffers grow to it only under bulk
// traffic and are then reused, not reallocated. A message, with its TLS
// and WebSocket overhead, must fit the tunnel's write batch (512 KiB, in
// package tunnel): when it did not, that batch was reallocated for every
// message, and 64 busy connections cost twice the CPU per byte. 256 KiB
// rather than 128: fewer messages and writes per byte, about 4 % less CPU
// per byte and faster uploads against the TLS forwarder (A/B pairs in
// docs/performance.md); 64 KiB was slower.
const maxPending = 256 << 10

// maxDirect is the largest frame written on the caller's goroutine when
// the connection is idle; larger ones (bulk data) go to the flusher, so
// that smux's send loop goes on while the batch is encrypted and written.
const maxDirect = 16 << 10

// closeFlushTimeout bounds how long Close waits for the pending frames to
// be written to a peer that does not read.
const closeFlushTimeout = time.Second

func newWatchedConn(c net.Conn) *watchedConn {
	w := &watchedConn{
		Conn: c,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	w.space.L = &w.mu
	go w.flush()
	return w
}

func (c *watchedConn) Read(p []byte) (int, error) {
	c.readSince.Store(time.Now().UnixNano())
	n, err := c.Conn.Read(p)
	c.readSince.Store(0)
	if errors.Is(err, io.EOF) {
		err = ErrTunnelClosed
	}
	return n, err
}

// silentFor is how long a pending read has been waiting for the peer; 0
// when no read is pending (between frames).
func (c *watchedConn) silentFor(now time.Time) time.Duration {
	since := c.readSince.Load()
	if since == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, since))
}

// Write queues p for the flusher. An error is that of an earlier batch (the
// tunnel is then dead) or net.ErrClosed.
func (c *watchedConn) Write(p []byte) (int, error) {
	return c.WriteBuffers([][]byte{p})
}

// WriteBuffers writes the concatenation of v. smux uses it to hand over a
// frame's header and payload without copying them together first. A small
// frame that finds nothing pending and nothing being written is written at
// once on the caller's goroutine: a request/response exchange pays no
// hand-off to the flusher. Anything else is queued for the flusher.
func (c *watchedConn) WriteBuffers(v [][]byte) (int, error) {
	n := 0
	for _, b := range v {
		n += len(b)
	}
	c.mu.Lock()
	for c.werr == nil && len(c.pending) > 0 && len(c.pending)+n > maxPending {
		c.wakeFlusher() // held frames must not keep a full batch waiting
		c.space.Wait()
	}
	if c.werr != nil {
		err := c.werr
		c.mu.Unlock()
		return 0, err
	}
	if n <= maxDirect && len(c.pending) == 0 && !c.writing && c.held == 0 {
		return c.writeDirect(v, n)
	}
	wake := len(c.pending) == 0 && c.held == 0
	for _, b := range v {
		c.pending = append(c.pending, b...)
	}
	c.mu.Unlock()
	if wake {
		c.wakeFlusher()
	}
	return n, nil
}

// hold keeps the frames written from now on in the pending batch until
// release is called, which hands them to the flusher. Opening a stream
// writes two frames back to back (smux's SYN, then the open request):
// held, they leave as one message, one TLS record and one system call, and
// the agent wakes once for them. Release never writes itself, so an open
// cannot block on a tunnel whose peer has stopped reading; and every
// release flushes, so overlapping holds delay no frame for longer than one
// hold. A full batch is written anyway. Call release exactly once.
func (c *watchedConn) hold() (release func()) {
	c.mu.Lock()
	c.held++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.held--
		pending := len(c.pending) > 0
		c.mu.Unlock()
		if pending {
			c.wakeFlusher()
		}
	}
}

// writeDirect writes v as one message; called with c.mu held, returns with
// it released.
func (c *watchedConn) writeDirect(v [][]byte, n int) (int, error) {
	c.writing = true
	buf := c.direct[:0]
	for _, b := range v {
		buf = append(buf, b...)
	}
	c.mu.Unlock()
	_, err := c.Conn.Write(buf)
	c.mu.Lock()
	c.direct = buf[:0]
	c.wrote(err)
	more := len(c.pending) > 0
	c.mu.Unlock()
	if err != nil {
		c.Conn.Close()
		return 0, err
	}
	if more {
		c.wakeFlusher()
	}
	return n, nil
}

// wrote ends a message's write, keeping the first error; called with c.mu
// held.
func (c *watchedConn) wrote(err error) {
	c.writing = false
	if err != nil && c.werr == nil {
		c.werr = err
	}
	c.space.Broadcast()
}

func (c *watchedConn) wakeFlusher() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flush writes each pending batch as one message until Close or a write
// error.
func (c *watchedConn) flush() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			c.writeBatch()
			return
		}
		if !c.writeBatch() {
			return
		}
	}
}

// writeBatch writes what is pending; false after a write error, which
// also closes the connection so that smux's reads end too.
func (c *watchedConn) writeBatch() bool {
	c.mu.Lock()
	for c.writing { // a direct write is on the wire
		c.space.Wait()
	}
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return true
	}
	batch := c.pending
	c.pending, c.spare = c.spare[:0], nil
	c.writing = true
	c.space.Broadcast()
	c.mu.Unlock()
	_, err := c.Conn.Write(batch)
	c.mu.Lock()
	c.spare = batch[:0]
	c.wrote(err)
	c.mu.Unlock()
	if err != nil {
		c.Conn.Close()
		return false
	}
	return true
}

// Close stops the flusher after it has written what is pending (bounded by
// closeFlushTimeout), then closes the connection. It is safe to call more
// than once and from several goroutines; every call returns after the
// flusher has exited.
func (c *watchedConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		if c.werr == nil {
			c.werr = net.ErrClosed
		}
		c.space.Broadcast()
		c.mu.Unlock()
		close(c.quit)
		t := time.NewTimer(closeFlushTimeout)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
		c.cerr = c.Conn.Close()
	})
	<-c.done
	return c.cerr
}
