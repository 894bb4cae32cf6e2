package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
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

// Pipe copies between conn and st until both directions have ended, then
// closes both. Each direction carries its end of data as a half-close. When
// anything fails (the tunnel dies, the peer resets the stream, conn is reset,
// ctx is cancelled) conn is reset (linger 0) and the stream aborted, so
// neither end mistakes a cut connection for a complete one.
func Pipe(ctx context.Context, conn HalfCloser, st *Stream) PipeResult {
	var (
		res       PipeResult
		abortOnce sync.Once
		wg        sync.WaitGroup
		done      = make(chan struct{})
	)
	abort := func(err error) {
		abortOnce.Do(func() {
			res.Aborted, res.Err = true, err
			Reset(conn)
			st.SetDeadline(time.Now()) // unblocks this side's copies
		})
	}
	wg.Add(2)
	go func() { // conn → stream
		defer wg.Done()
		n, err := io.Copy(st.Stream, conn)
		res.ToStream = n
		if err == nil {
			err = st.CloseWrite()
		}
		if err != nil {
			abort(err)
		}
	}()
	go func() { // stream → conn
		defer wg.Done()
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
	}()
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-st.peerReset:
		abort(ErrPeerReset)
	case <-st.sess.done:
		abort(ErrSessionClosed)
	case <-ctx.Done():
		abort(ctx.Err())
	}
	<-done
	if res.Aborted {
		if errors.Is(res.Err, ErrTunnelClosed) || errors.Is(res.Err, io.ErrClosedPipe) {
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

// Reset closes conn with a TCP reset rather than a FIN where it can.
func Reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
