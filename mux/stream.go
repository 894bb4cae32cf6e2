package mux

import (
	"sync"
	"time"

	"github.com/xtaci/smux"
)

// Stream is one data stream: one proxied connection. Read, Write and
// CloseWrite come from smux (CloseWrite is a half-close: the peer reads EOF
// and may go on writing). A Stream must be ended with Close (a clean end) or
// Abort (the peer resets its side); Start does one or the other.
type Stream struct {
	*smux.Stream
	sess *Session

	peerReset     chan struct{} // closed when the peer asked for a reset
	peerResetOnce sync.Once
	abortMu       sync.Mutex
	onAbort       func(error)   // set by Start: called on a peer reset or the session's end
	abortErr      error         // why, if that happened before onAbort was set
	acked         chan struct{} // closed when the peer acknowledged our reset
	ackOnce       sync.Once
	closeOnce     sync.Once
}

// ReadRequest reads the open request at the start of a stream (agent side),
// waiting at most the session's handshake timeout. A stream the gateway
// has already reset (it gave up waiting) gives ErrPeerReset, with the
// request as far as it was read: there is nothing to dial.
func (st *Stream) ReadRequest() (OpenRequest, error) {
	st.SetReadDeadline(time.Now().Add(st.sess.set.HandshakeTimeout))
	defer st.SetReadDeadline(time.Time{})
	req, err := ReadOpenRequest(st.Stream)
	select {
	case <-st.peerReset:
		return req, ErrPeerReset
	default:
	}
	return req, err
}

// Reply writes the answer to the open request (agent side).
func (st *Stream) Reply(r Reply) error {
	st.SetWriteDeadline(time.Now().Add(st.sess.set.HandshakeTimeout))
	defer st.SetWriteDeadline(time.Time{})
	_, err := st.Write(r.Append(make([]byte, 0, 4+len(r.Message))))
	return err
}

// peerAborted records that the peer reset the stream and tells its pipe.
func (st *Stream) peerAborted() {
	st.peerResetOnce.Do(func() { close(st.peerReset) })
	st.notifyAbort(ErrPeerReset)
}

// notifyAbort tells the stream's pipe that the peer reset the stream or the
// session ended. Safe from any goroutine; never blocks for long.
func (st *Stream) notifyAbort(why error) {
	st.abortMu.Lock()
	f := st.onAbort
	if f == nil && st.abortErr == nil {
		st.abortErr = why
	}
	st.abortMu.Unlock()
	if f != nil {
		f(why)
	}
}

// setOnAbort registers the pipe's abort; it runs at once if the reason came
// first.
func (st *Stream) setOnAbort(f func(error)) {
	st.abortMu.Lock()
	st.onAbort = f
	why := st.abortErr
	st.abortMu.Unlock()
	if why != nil {
		f(why)
	}
}

// Close ends the stream cleanly (a FIN in each direction not yet closed).
func (st *Stream) Close() error {
	var err error
	st.closeOnce.Do(func() {
		st.sess.unregister(st)
		err = st.Stream.Close()
	})
	return err
}

// Abort ends the stream so that the peer resets its end of the proxied
// connection instead of seeing a clean end. Unless the peer started the
// reset, Abort tells it on the control stream and waits (at most the
// handshake timeout) for its acknowledgement before closing, so the peer
// never reads the close as a clean end of data.
func (st *Stream) Abort() {
	select {
	case <-st.peerReset:
	default:
		if st.sess.Send(Message{Type: TypeReset, Stream: st.ID()}) == nil {
			t := time.NewTimer(st.sess.set.HandshakeTimeout)
			select {
			case <-st.acked:
			case <-st.peerReset:
			case <-st.sess.done:
			case <-t.C:
			}
			t.Stop()
		}
	}
	st.Close()
}
