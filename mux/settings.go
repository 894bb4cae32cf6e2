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
	// StreamWindow is the per-stream receive window in bytes: how much one
	// stream may have in flight before its sender waits for the reader.
	StreamWindow int
	// SessionBuffer caps the bytes buffered for all streams of a session:
	// the memory a busy tunnel holds. Reading the tunnel pauses while it is
	// full, so SessionBuffer/StreamWindow streams whose readers all stop
	// (16 by default) hold up the others until one of them reads or ends.
	SessionBuffer int
	// FrameSize is the largest smux data frame.
	FrameSize int
}

// DefaultSettings returns the settings Ferry uses unless configured otherwise.
func DefaultSettings() Settings {
	return Settings{
		KeepaliveInterval: 10 * time.Second,
		KeepaliveTimeout:  30 * time.Second,
		HandshakeTimeout:  15 * time.Second,
		StreamWindow:      512 << 10,
		SessionBuffer:     8 << 20,
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
	case s.SessionBuffer < s.StreamWindow:
		return fmt.Errorf("session buffer %d smaller than the stream window %d", s.SessionBuffer, s.StreamWindow)
	}
	return nil
}

func (s Settings) smux() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveInterval = s.KeepaliveInterval
	c.KeepAliveTimeout = 2 * s.KeepaliveTimeout // a backstop: Session's watchdog acts first
	c.MaxFrameSize = s.FrameSize
	c.MaxReceiveBuffer = s.SessionBuffer
	c.MaxStreamBuffer = s.StreamWindow
	return c
}
