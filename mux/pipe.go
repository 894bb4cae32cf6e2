package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
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

// Pipe copies between conn and st until both directions have ended, then
// closes both. Each direction carries its end of data as a half-close. When
// anything fails (the tunnel dies, the peer resets the stream, conn is reset,
// ctx is cancelled) conn is reset (linger 0) and the stream aborted, so
// neither end mistakes a cut connection for a complete one.
//
// Pipe uses one goroutine besides the caller's, and an idle connection holds
// no copy buffer.
func Pipe(ctx context.Context, conn HalfCloser, st *Stream) PipeResult {
	var (
		res       PipeResult
		abortOnce sync.Once
		mu        sync.Mutex // guards res.Aborted/res.Err against late aborts
	)
	abort := func(err error) {
		abortOnce.Do(func() {
			mu.Lock()
			res.Aborted, res.Err = true, err
			mu.Unlock()
			Reset(conn)
			st.SetDeadline(time.Now()) // unblocks this side's copies
		})
	}
	st.setOnAbort(abort)
	stop := context.AfterFunc(ctx, func() { abort(ctx.Err()) })

	up := make(chan struct{})
	go func() { // conn → stream
		defer close(up)
		n, err := copyToStream(st, conn)
		res.ToStream = n
		if err == nil {
			err = st.CloseWrite()
		}
		if err != nil {
			abort(err)
		}
	}()
	// stream → conn; smux's WriteTo holds no buffer while the stream is idle.
	n, err := io.Copy(conn, st.Stream)
	res.FromStream = n
	if err == nil {
		select {
		case <-st.peerReset: // the peer's close followed its reset
			err = ErrPeerReset
		default:
			err = conn.CloseWrite()
		}
	}
	if err != nil {
		abort(err)
	}
	<-up
	stop()
	abortOnce.Do(func() {}) // no abort from here on
	st.setOnAbort(func(error) {})

	mu.Lock()
	defer mu.Unlock()
	if res.Aborted {
		if errors.Is(res.Err, ErrTunnelClosed) || errors.Is(res.Err, io.ErrClosedPipe) || errors.Is(res.Err, ErrSessionClosed) {
			if st.sess.Err() != nil {
				res.Err = ErrSessionClosed
			}
		}
		st.Abort()
		return res
	}
	conn.Close()
	st.Close()
	return res
}

// copyToStream copies conn to st until EOF (returned as nil). It waits for
// conn to become readable before it takes a buffer, and gives the buffer
// back after a read that drained the socket, so an idle connection holds
// none.
func copyToStream(st *Stream, conn net.Conn) (int64, error) {
	var rc syscall.RawConn
	if sc, ok := conn.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	var total int64
	var buf *[]byte
	defer func() {
		if buf != nil {
			copyBufs.Put(buf)
		}
	}()
	for {
		if buf == nil {
			if rc != nil {
				if err := waitReadable(rc); err != nil {
					return total, err
				}
			}
			buf = copyBufs.Get().(*[]byte)
		}
		n, err := conn.Read(*buf)
		if n > 0 {
			if _, werr := st.Write((*buf)[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n < len(*buf) {
			copyBufs.Put(buf)
			buf = nil
		}
	}
}

// Reset closes conn with a TCP reset rather than a FIN where it can.
func Reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
