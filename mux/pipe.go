package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HalfCloser is a connection that can end its write side alone, as
// *net.TCPConn can.
type HalfCloser interface {
	net.Conn
	CloseWrite() error
}

// PipeResult says how a proxied connection ended.
type PipeResult struct {
	ToStream   int64 // bytes read from the connection and sent on the stream
	FromStream int64 // bytes received on the stream and written to the connection
	Aborted    bool  // the connection was reset rather than closed cleanly
	Err        error // why it was aborted; nil for a clean end
}

// copyBufSize is the chunk read from a connection: one smux frame.
const copyBufSize = 32 << 10

// copyBufs holds the chunks of busy connections; an idle one holds none.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Start copies between conn and st in two new goroutines and returns at
// once; done receives the result on the last of them, after conn and st
// are closed, and the pipe ends when done returns. Each direction carries
// its end of data as a half-close. When anything fails (the tunnel dies,
// the peer resets the stream, conn is reset, ctx is cancelled) conn is
// reset (linger 0) and the stream aborted, so neither end mistakes a cut
// connection for a complete one.
//
// The copies run on fresh goroutines rather than on the caller's, whose
// stack has grown through the open handshake and logging: a proxied
// connection that sits idle holds two small stacks and no copy buffer.
func Start(ctx context.Context, conn HalfCloser, st *Stream, done func(PipeResult)) {
	p := &pipe{conn: conn, st: st, done: done}
	p.left.Store(2)
	if sc, ok := conn.(syscall.Conn); ok {
		p.rc, _ = sc.SyscallConn()
	}
	if p.rc != nil {
		// The stream's window grows only while what it delivers to conn
		// leaves conn too.
		st.SetDrained(func() bool { return sendQueueDrains(p.rc) })
	}
	st.setOnAbort(p.abort)
	p.stop = context.AfterFunc(ctx, func() { p.abort(ctx.Err()) })
	go p.up()
	go p.down()
}

// pipe is one proxied connection between Start and its done call.
type pipe struct {
	conn HalfCloser
	rc   syscall.RawConn // conn's, where it has one
	st   *Stream
	done func(PipeResult)
	stop func() bool // unregisters the ctx watch

	left      atomic.Int32 // copy goroutines still running; the last one finishes
	toStream  int64        // written by up only
	fromSt    int64        // written by down only
	abortOnce sync.Once
	mu        sync.Mutex // guards aborted and err against late aborts
	aborted   bool
	err       error
}

func (p *pipe) abort(err error) {
	p.abortOnce.Do(func() {
		p.mu.Lock()
		p.aborted, p.err = true, err
		p.mu.Unlock()
		Reset(p.conn)
		p.st.SetDeadline(time.Now()) // unblocks this side's copies
	})
}

// up copies conn → stream.
func (p *pipe) up() {
	n, err := copyToStream(p.st, p.conn, p.rc, p.abort)
	p.toStream = n
	if err == nil {
		err = p.st.CloseWrite()
	}
	if err != nil {
		p.abort(err)
	}
	p.finish()
}

// down copies stream → conn; smux's WriteTo holds no buffer while the
// stream is idle.
func (p *pipe) down() {
	n, err := io.Copy(p.conn, p.st.Stream)
	p.fromSt = n
	if err == nil {
		select {
		case <-p.st.peerReset: // the peer's close followed its reset
			err = ErrPeerReset
		default:
			err = p.conn.CloseWrite()
		}
	}
	if err != nil {
		p.abort(err)
	}
	p.finish()
}

// finish closes both ends and reports, on the last copy goroutine to end.
func (p *pipe) finish() {
	if p.left.Add(-1) != 0 {
		return
	}
	p.stop()
	p.abortOnce.Do(func() {}) // no abort from here on
	p.st.setOnAbort(func(error) {})

	p.mu.Lock()
	res := PipeResult{ToStream: p.toStream, FromStream: p.fromSt, Aborted: p.aborted, Err: p.err}
	p.mu.Unlock()
	if res.Aborted {
		if errors.Is(res.Err, ErrTunnelClosed) || errors.Is(res.Err, io.ErrClosedPipe) || errors.Is(res.Err, ErrSessionClosed) {
			if p.st.sess.Err() != nil {
				res.Err = ErrSessionClosed
			}
		}
		p.st.Abort()
	} else {
		p.conn.Close()
		p.st.Close()
	}
	p.done(res)
}

// copyToStream copies conn to st until EOF (returned as nil). Where the
// system allows, it takes a buffer only once conn has data and gives it
// back when conn is drained, so an idle connection holds none; each wait
// for data then costs one read that finds nothing. A write that must wait
// for the stream's window watches conn meanwhile, and calls reset when
// conn's peer resets it (see writeWatched). rc is conn's raw connection,
// nil where it has none.
func copyToStream(st *Stream, conn net.Conn, rc syscall.RawConn, reset func(error)) (int64, error) {
	var total int64
	var buf *[]byte
	defer func() {
		if buf != nil {
			copyBufs.Put(buf)
		}
	}()
	for {
		var b []byte
		var err error
		if rc != nil && readsReady {
			b, err = readReady(rc, &buf)
		} else {
			if buf == nil {
				buf = copyBufs.Get().(*[]byte)
			}
			var n int
			n, err = conn.Read(*buf)
			b = (*buf)[:n]
		}
		if len(b) > 0 {
			if werr := writeWatched(st, b, conn, rc, reset); werr != nil {
				// A write that timed out (an abort sets the deadline) may
				// leave its frame queued in smux, pointing into buf: the
				// buffer must not go back to the pool for another
				// connection to fill.
				buf = nil
				return total, werr
			}
			total += int64(len(b))
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, opError(conn, err)
		}
	}
}

// writeWatched writes b on st. When st's window cannot take b now (the
// peer's reader is slow or has stopped), the write may wait for long, and
// nothing reads conn meanwhile: a reset from conn's peer (a client that
// gave up) would go unnoticed, and the stream, its window and the target's
// connection would stay. So, where the system can see a reset without
// reading, a goroutine watches conn for one while the write waits, and
// calls reset, which ends the write. Writes that fit the window, the
// common case, start nothing.
func writeWatched(st *Stream, b []byte, conn net.Conn, rc syscall.RawConn, reset func(error)) error {
	if rc == nil || !resetsSeen || st.SendWindow() >= len(b) {
		_, err := st.Write(b)
		return err
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if err := waitReset(rc); errors.Is(err, syscall.ECONNRESET) {
			reset(opError(conn, err))
		}
	}()
	_, err := st.Write(b)
	// A deadline stops the watch, and clearing it leaves conn without one:
	// nothing else sets a read deadline on a piped connection (an idle
	// limit built on one would have to be restored here).
	conn.SetReadDeadline(time.Unix(1, 0))
	<-watched
	conn.SetReadDeadline(time.Time{})
	return err
}

// opError gives a read error from the raw socket the form net.Conn's
// reads give it.
func opError(conn net.Conn, err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return err
	}
	return &net.OpError{Op: "read", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: err}
}

// Reset closes conn with a TCP reset rather than a FIN where it can.
func Reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
