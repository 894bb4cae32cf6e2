package mux

import (
	"errors"
	"fmt"
	"time"

	"github.com/xtaci/smux"
)

// Settings are the tunables of a session. The zero value is not valid; start
// from DefaultSettings.
type Settings struct {
	// KeepaliveInterval is how often each side sends a keepalive frame and a
	// ping on the control stream.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout closes the session when nothing has arrived for this
	// long: a dead link is noticed within it.
	KeepaliveTimeout time.Duration
	// HandshakeTimeout bounds the control-stream exchange that starts a
	// session, and the wait for an open reply.
	HandshakeTimeout time.Duration
	// StreamWindow is each stream's first receive window in bytes: how
	// much one stream may have in flight before its sender waits for the
	// reader, and so what a stream whose reader has stopped holds.
	StreamWindow int
	// MaxStreamWindow is how far a stream's receive window may grow while
	// the window, not the reader, limits the stream: one stream moves at
	// most MaxStreamWindow per round trip. A stream that uses little of its
	// window (a slow or stopped reader or sender) shrinks back towards
	// StreamWindow. Equal to StreamWindow: fixed windows.
	MaxStreamWindow int
	// WindowBudget bounds the growth of all of a session's windows
	// together: the most a session buffers is StreamWindow per stream plus
	// WindowBudget. Reading the tunnel never pauses for a full buffer, so
	// a stream whose reader stops holds up no other stream.
	WindowBudget int
	// FrameSize is the largest smux data frame.
	FrameSize int
}

// MaxWindow bounds MaxStreamWindow and WindowBudget (1 GiB): smux counts a
// stream's bytes modulo 2^32.
const MaxWindow = 1 << 30

// DefaultSettings returns the settings Ferry uses unless configured otherwise.
func DefaultSettings() Settings {
	return Settings{
		KeepaliveInterval: 10 * time.Second,
		KeepaliveTimeout:  30 * time.Second,
		HandshakeTimeout:  15 * time.Second,
		StreamWindow:      256 << 10,
		MaxStreamWindow:   32 << 20,
		WindowBudget:      64 << 20,
		FrameSize:         32 << 10,
	}
}

// Validate reports the first setting that is out of range.
func (s Settings) Validate() error {
	switch {
	case s.KeepaliveInterval <= 0:
		return errors.New("keepalive interval must be positive")
	case s.KeepaliveTimeout <= s.KeepaliveInterval:
		return fmt.Errorf("keepalive timeout %s must be longer than the keepalive interval %s", s.KeepaliveTimeout, s.KeepaliveInterval)
	case s.HandshakeTimeout <= 0:
		return errors.New("handshake timeout must be positive")
	case s.FrameSize < 1024 || s.FrameSize > 65535:
		return fmt.Errorf("frame size %d out of range 1024-65535", s.FrameSize)
	case s.StreamWindow < s.FrameSize:
		return fmt.Errorf("stream window %d smaller than the frame size %d", s.StreamWindow, s.FrameSize)
	case s.MaxStreamWindow < s.StreamWindow:
		return fmt.Errorf("max stream window %d smaller than the first stream window %d", s.MaxStreamWindow, s.StreamWindow)
	case s.MaxStreamWindow > MaxWindow:
		return fmt.Errorf("max stream window %d larger than %d", s.MaxStreamWindow, MaxWindow)
	case s.WindowBudget < 0 || s.WindowBudget > MaxWindow:
		return fmt.Errorf("window budget %d out of range 0-%d", s.WindowBudget, MaxWindow)
	}
	return nil
}

func (s Settings) smux() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveInterval = s.KeepaliveInterval
	c.KeepAliveTimeout = 2 * s.KeepaliveTimeout // a backstop: Session's watchdog acts first
	c.MaxFrameSize = s.FrameSize
	c.MaxStreamBuffer = s.StreamWindow
	c.MaxStreamWindow = s.MaxStreamWindow // per-stream flow control only; MaxReceiveBuffer is unused
	c.StreamWindowBudget = s.WindowBudget
	return c
}
