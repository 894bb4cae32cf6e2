package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/coder/websocket"
)

// stream is the tunnel's WebSocket as the byte stream smux runs on: binary
// messages in, the bytes of each Write out as one message. A message
// boundary carries no meaning (docs/protocol.md).
//
// It replaces websocket.NetConn, which wraps its context in a cancelable
// one of its own, so that coder/websocket arms and disarms a
// context.AfterFunc for every message read and every message written:
// half of the allocations of opening a stream, and a registration on a
// shared context per frame. Reading and writing here use a context that is
// never cancelled, which arms nothing; one AfterFunc ends the connection,
// at once, when life ends. Like NetConn it supports no deadlines: the
// tunnel's liveness comes from keepalives.
//
// Read is for one goroutine at a time (smux's read loop); Write and Close
// are safe for concurrent use.
type stream struct {
	c      *websocket.Conn
	ctx    context.Context // life's values, never cancelled
	stop   func() bool     // unregisters the close on life's end
	local  net.Addr
	remote net.Addr

	r   io.Reader // the message being read; nil between messages
	eof bool
}

// errDeadline answers SetDeadline and its kin.
var errDeadline = errors.New("tunnel stream: deadlines are not supported; liveness comes from keepalives")

// newStream wraps c, which ends when life does. under, when known, is the
// TCP connection below, whose addresses the stream reports.
func newStream(life context.Context, c *websocket.Conn, under net.Conn) *stream {
	c.SetReadLimit(-1) // messages are bounded by the sender's batch, not here
	s := &stream{c: c, ctx: context.WithoutCancel(life), local: wsAddr{}, remote: wsAddr{}}
	if under != nil {
		s.local, s.remote = under.LocalAddr(), under.RemoteAddr()
	}
	s.stop = context.AfterFunc(life, func() { c.CloseNow() })
	return s
}

func (s *stream) Read(p []byte) (int, error) {
	for {
		if s.eof {
			return 0, io.EOF
		}
		if s.r == nil {
			typ, r, err := s.c.Reader(s.ctx)
			if err != nil {
				switch websocket.CloseStatus(err) {
				case websocket.StatusNormalClosure, websocket.StatusGoingAway:
					s.eof = true
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.MessageBinary {
				err := fmt.Errorf("tunnel stream: unexpected %v message", typ)
				s.c.Close(websocket.StatusUnsupportedData, "binary messages only")
				return 0, err
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if err == io.EOF {
			s.r, err = nil, nil
			if n == 0 {
				continue // an empty message, or its end: read the next
			}
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (s *stream) Write(p []byte) (int, error) {
	if err := s.c.Write(s.ctx, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the connection at once. smux's read loop always has a read
// pending, which NetConn's Close cancelled, ending the connection without
// a closing handshake; a handshake would also wait up to 5 s for a peer
// that may be gone. The peer learns of the end from the connection's.
func (s *stream) Close() error {
	s.stop()
	return s.c.CloseNow()
}

func (s *stream) LocalAddr() net.Addr              { return s.local }
func (s *stream) RemoteAddr() net.Addr             { return s.remote }
func (s *stream) SetDeadline(time.Time) error      { return errDeadline }
func (s *stream) SetReadDeadline(time.Time) error  { return errDeadline }
func (s *stream) SetWriteDeadline(time.Time) error { return errDeadline }

// wsAddr stands in for an address the stream does not know.
type wsAddr struct{}

func (wsAddr) Network() string { return "websocket" }
func (wsAddr) String() string  { return "websocket" }

var _ net.Conn = (*stream)(nil)
