// MIT License
//
// Copyright (c) 2016-2017 xtaci
//
// Permission is hereby granted, free of charge, to any person obtaining a copy
// of this software and associated documentation files (the "Software"), to deal
// in the Software without restriction, including without limitation the rights
// to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
// copies of the Software, and to permit persons to whom the Software is
// furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in all
// copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
// IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
// OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
// SOFTWARE.

package smux

import (
	"sync/atomic"
)

// maxWindow bounds MaxStreamWindow: the window arithmetic is modulo 2^32
// and compares differences as int32.
const maxWindow = 1 << 30

// Receive-window tuning (Config.MaxStreamWindow). An epoch lasts until
// the reader has consumed a whole window; how long that took, against the
// round trip (Session.SetRTT, the path's least), says whether the window
// limits the stream. A stream limited by its window moves one window per
// round trip, and none can move more, so:
//
//   - a window in under two round trips: the window is surely what
//     limits the stream: quadruple it, as a sender that starts a long
//     transfer on a long link must reach its bandwidth-delay product in a
//     few round trips. (A window that has just grown shows only after a
//     round trip: the epoch after a growth takes about 1.75 round trips.);
//   - in under three: probably: double it;
//   - in more than 32 round trips: the stream uses little of its window,
//     because its reader or its sender is slow, or it pauses: halve it.
//
// A reader that hands its bytes to a buffer that is filling (a socket
// whose peer has stopped reading takes megabytes before it blocks) looks
// fast until the buffer is full, and a window grown then would be held,
// full, by a reader that has stopped: many such streams would hold the
// session's whole budget. So the owner of the stream can say whether its
// reader's destination keeps up (Stream.SetDrained): a window grows only
// while it does, and halves at the end of an epoch when it does not.
//
// Between the two a window stays where it is. An epoch spans a whole
// window, not one update, so that a burst (a reader draining a backlog, a
// window's worth arriving at once over an unpaced link) is not taken for a
// rate. A reader that stops ends no epoch: its stream holds its window
// until it reads again, and its slow epochs then shrink it. Growth comes
// out of the session's StreamWindowBudget and goes back to it when the
// window shrinks or the stream ends.
const (
	fastRTTs   = 2
	growRTTs   = 3
	shrinkRTTs = 32
)

// nextWindow returns the window to advertise with a window update that
// reports consumed, and records the credit it gives the peer. Called with
// bufferLock held.
func (s *stream) nextWindow(consumed uint32) uint32 {
	cfg := s.sess.config
	if !s.sess.perStream() {
		return uint32(cfg.MaxStreamBuffer)
	}
	before := s.window
	if cfg.MaxStreamWindow > cfg.MaxStreamBuffer && !s.windowReleased {
		s.tune(consumed)
	}
	// The peer may still use the credit of an earlier, larger update that
	// was in flight when this one left, so the limit never goes down. And
	// a sender stores an update's consumed count before its window, so a
	// sender that reads the pair between the two stores computes
	// consumed + the previous window: a shrink binds one update later.
	if limit := consumed + max(s.window, before); int32(limit-s.recvLimit) > 0 {
		s.recvLimit = limit
	}
	return s.window
}

// tune resizes the window with an update. Called with bufferLock held.
func (s *stream) tune(consumed uint32) {
	w := s.window
	read := consumed - s.epochRead
	if read < w {
		return
	}
	now := s.sess.now()
	elapsed := float64(now.Sub(s.epochStart))
	s.epochStart, s.epochRead = now, consumed
	rtt := float64(s.sess.rtt.Load())
	if rtt <= 0 {
		return
	}
	perWindow := elapsed * float64(w) / float64(read) // time to consume one window
	switch {
	case s.drained != nil && !s.drained():
		s.setWindow(uint64(w / 2))
	case perWindow < fastRTTs*rtt:
		s.setWindow(4 * uint64(w))
	case perWindow < growRTTs*rtt:
		s.setWindow(2 * uint64(w))
	case perWindow > shrinkRTTs*rtt:
		s.setWindow(uint64(w / 2))
	}
}

// setWindow moves the window towards w, within MaxStreamBuffer,
// MaxStreamWindow and what the budget has left. Called with bufferLock
// held.
func (s *stream) setWindow(want uint64) {
	cfg := s.sess.config
	w := uint32(max(min(want, uint64(cfg.MaxStreamWindow)), uint64(cfg.MaxStreamBuffer)))
	if w > s.window {
		want := int64(w - s.window)
		for {
			used := s.sess.windowGrown.Load()
			grant := min(want, int64(cfg.StreamWindowBudget)-used)
			if grant <= 0 {
				return
			}
			if s.sess.windowGrown.CompareAndSwap(used, used+grant) {
				w = s.window + uint32(grant)
				break
			}
		}
	} else {
		s.sess.windowGrown.Add(-int64(s.window - w))
	}
	s.window = w
	// A grown window serves a long link, where the sender must not run
	// short of credit between updates: one every quarter window. At its
	// first size, as upstream, every half (fewer updates, less CPU, on the
	// short paths where many streams stay at it).
	s.windowUpdateThreshold = w / 2
	if w > uint32(cfg.MaxStreamBuffer) {
		s.windowUpdateThreshold = w / 4
	}
}

// SetDrained gives the window tuning a test of the stream's reader (see
// tune): drained reports whether what the reader has consumed has also
// left it, for example a socket's send queue less than half full. It is
// called with the stream's lock held, once per window consumed, and must
// be quick and must not call the stream. Call it before the stream carries
// data; nil removes it.
func (s *stream) SetDrained(drained func() bool) {
	s.bufferLock.Lock()
	defer s.bufferLock.Unlock()
	s.drained = drained
}

// releaseWindow gives the stream's grown window back to the session's
// budget when the stream leaves the session; it cannot grow after that.
func (s *stream) releaseWindow() {
	s.bufferLock.Lock()
	defer s.bufferLock.Unlock()
	if s.windowReleased {
		return
	}
	s.windowReleased = true
	s.sess.windowGrown.Add(-int64(s.window - uint32(s.sess.config.MaxStreamBuffer)))
}

// RecvWindow is the receive window the stream advertised last (version
// 2): MaxStreamBuffer unless MaxStreamWindow tunes it.
func (s *stream) RecvWindow() int {
	s.bufferLock.Lock()
	defer s.bufferLock.Unlock()
	return int(s.window)
}

// SendWindow is how many bytes the stream may send now before it waits
// for its peer's window update (version 2); it is never negative.
func (s *stream) SendWindow() int {
	inflight := int32(atomic.LoadUint32(&s.numWritten) - atomic.LoadUint32(&s.peerConsumed))
	win := int32(atomic.LoadUint32(&s.peerWindow)) - inflight
	return int(max(win, 0))
}
