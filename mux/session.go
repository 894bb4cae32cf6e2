package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

// Errors a session reports. Callers match them with errors.Is.
var (
	// ErrSessionClosed is returned by calls on a session that has ended.
	ErrSessionClosed = errors.New("tunnel session closed")
	// ErrTunnelClosed replaces io.EOF from the tunnel connection, so that the
	// end of a tunnel is never mistaken for a stream's clean end of data.
	ErrTunnelClosed = errors.New("tunnel connection closed")
	// ErrProtocol marks a peer that broke the protocol; the session is closed.
	ErrProtocol = errors.New("tunnel protocol violation")
	// ErrPeerReset is the reason of a stream aborted by the other side.
	ErrPeerReset = errors.New("stream reset by peer")
	// ErrNotSent marks an Open that failed before it wrote anything to the
	// tunnel: trying another tunnel cannot deliver a byte twice.
	ErrNotSent = errors.New("nothing was sent")
	// ErrClientGone marks an OpenConn whose client connection failed (a
	// reset) while the open waited for its reply; the stream is aborted.
	ErrClientGone = errors.New("client connection failed during the open")
)

// OpenError is returned by Open when the agent answered with anything but ok.
type OpenError struct {
	Reply Reply
}

func (e *OpenError) Error() string {
	if e.Reply.Message == "" {
		return "agent refused stream: " + e.Reply.Code.String()
	}
	return fmt.Sprintf("agent refused stream: %s: %s", e.Reply.Code, e.Reply.Message)
}

// Session is one tunnel's smux session with its control stream. It is safe
// for concurrent use. The session owns the tunnel connection: Close (or the
// end of the tunnel) closes it, ends every stream and waits for the
// session's goroutines.
type Session struct {
	set       Settings
	conn      *watchedConn
	sm        *smux.Session
	ctrl      *smux.Stream
	onMessage func(Message)

	wmu    sync.Mutex // serialises control writes
	openMu sync.Mutex // gateway: SYNs leave in stream ID order (see lookupOrRemember)

	mu      sync.Mutex
	streams map[uint32]*Stream
	lastID  uint32          // the highest stream ID registered so far
	early   map[uint32]bool // agent side: resets of streams not accepted yet (at most maxEarly)
	pings   map[uint64]time.Time
	seq     uint64
	rtts    [rttSamples]time.Duration // the last round trips, for minRTT
	nrtt    int                       // round trips measured so far
	err     error

	rtt       atomic.Int64
	draining  atomic.Bool // peer sent drain (seen by the gateway)
	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// Gateway starts the gateway's end of a session over conn: it opens the
// control stream, sends hello and waits for the agent's info message. onMessage
// receives the control messages the session does not handle itself (drain and
// later info); it is called from the session's goroutine and must not block.
// On error conn is closed.
func Gateway(ctx context.Context, conn net.Conn, set Settings, hello Message, onMessage func(Message)) (*Session, Message, error) {
	if err := set.Validate(); err != nil {
		conn.Close()
		return nil, Message{}, err
	}
	wc := newWatchedConn(conn)
	conn = wc
	sm, err := smux.Client(conn, set.smux())
	if err != nil {
		conn.Close()
		return nil, Message{}, fmt.Errorf("start smux client: %w", err)
	}
	fail := func(err error) (*Session, Message, error) {
		sm.Close()
		conn.Close()
		return nil, Message{}, err
	}
	ctrl, err := sm.OpenStream()
	if err != nil {
		return fail(fmt.Errorf("open control stream: %w", err))
	}
	stop := handshakeDeadline(ctx, ctrl, set.HandshakeTimeout)
	defer stop()
	hello.Type = TypeHello
	if err := writeControl(ctrl, nil, hello); err != nil {
		return fail(fmt.Errorf("send hello: %w", err))
	}
	info, err := ReadControl(ctrl)
	if err != nil {
		return fail(fmt.Errorf("read agent info: %w", err))
	}
	if info.Type != TypeInfo {
		return fail(fmt.Errorf("%w: first agent message is %q, want info", ErrProtocol, info.Type))
	}
	ctrl.SetDeadline(time.Time{})
	s := newSession(set, wc, sm, ctrl, onMessage)
	s.wg.Add(1)
	go s.rejectAgentStreams()
	return s, info, nil
}

// Agent starts the agent's end of a session over conn: it accepts the
// control stream, reads hello and answers with info. onMessage receives
// goaway and any message the session does not handle itself; it must not
// block. On error conn is closed.
func Agent(ctx context.Context, conn net.Conn, set Settings, info Message, onMessage func(Message)) (*Session, Message, error) {
	if err := set.Validate(); err != nil {
		conn.Close()
		return nil, Message{}, err
	}
	wc := newWatchedConn(conn)
	conn = wc
	sm, err := smux.Server(conn, set.smux())
	if err != nil {
		conn.Close()
		return nil, Message{}, fmt.Errorf("start smux server: %w", err)
	}
	fail := func(err error) (*Session, Message, error) {
		sm.Close()
		conn.Close()
		return nil, Message{}, err
	}
	deadline := time.Now().Add(set.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	sm.SetDeadline(deadline)
	ctrl, err := sm.AcceptStream()
	if err != nil {
		return fail(fmt.Errorf("accept control stream: %w", err))
	}
	sm.SetDeadline(time.Time{})
	stop := handshakeDeadline(ctx, ctrl, set.HandshakeTimeout)
	defer stop()
	hello, err := ReadControl(ctrl)
	if err != nil {
		return fail(fmt.Errorf("read gateway hello: %w", err))
	}
	if hello.Type != TypeHello {
		return fail(fmt.Errorf("%w: first gateway message is %q, want hello", ErrProtocol, hello.Type))
	}
	info.Type = TypeInfo
	if err := writeControl(ctrl, nil, info); err != nil {
		return fail(fmt.Errorf("send info: %w", err))
	}
	ctrl.SetDeadline(time.Time{})
	s := newSession(set, wc, sm, ctrl, onMessage)
	s.early = make(map[uint32]bool) // only the agent accepts streams
	return s, hello, nil
}

func newSession(set Settings, conn *watchedConn, sm *smux.Session, ctrl *smux.Stream, onMessage func(Message)) *Session {
	if onMessage == nil {
		onMessage = func(Message) {}
	}
	s := &Session{
		set:       set,
		conn:      conn,
		sm:        sm,
		ctrl:      ctrl,
		onMessage: onMessage,
		streams:   make(map[uint32]*Stream),
		pings:     make(map[uint64]time.Time),
		done:      make(chan struct{}),
	}
	s.wg.Add(3)
	go s.readControl()
	go s.ping()
	go s.watch()
	return s
}

// handshakeDeadline bounds the reads and writes on st by timeout and by ctx.
func handshakeDeadline(ctx context.Context, st *smux.Stream, timeout time.Duration) (stop func() bool) {
	st.SetDeadline(time.Now().Add(timeout))
	return context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended; nil while it is open.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// RTT is the last round trip measured on the control stream, 0 before the
// first pong.
func (s *Session) RTT() time.Duration { return time.Duration(s.rtt.Load()) }

// PeerDraining reports whether the agent has asked for no new streams.
func (s *Session) PeerDraining() bool { return s.draining.Load() }

// NumStreams is the number of open data streams.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Send writes a control message (drain, goaway) to the peer.
func (s *Session) Send(m Message) error {
	select {
	case <-s.done:
		return ErrSessionClosed
	default:
	}
	if err := writeControl(s.ctrl, &s.wmu, m); err != nil {
		s.shutdown(fmt.Errorf("write control message: %w", err))
		return ErrSessionClosed
	}
	return nil
}

// Close ends the session and every stream on it, closes the tunnel
// connection, and returns once the session's goroutines have exited.
func (s *Session) Close() error {
	s.shutdown(ErrSessionClosed)
	s.wg.Wait()
	return nil
}

// shutdown ends the session without waiting; safe from the session's own
// goroutines.
func (s *Session) shutdown(why error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.err = why
		s.mu.Unlock()
		close(s.done)
		s.sm.Close()
		s.conn.Close()
		s.mu.Lock()
		streams := make([]*Stream, 0, len(s.streams))
		for _, st := range s.streams {
			streams = append(streams, st)
		}
		s.mu.Unlock()
		for _, st := range streams {
			st.notifyAbort(ErrSessionClosed)
		}
	})
}

// Open opens a data stream to target (gateway side): it sends the open
// request and waits for the agent's reply, bounded by ctx and the handshake
// timeout. A reply other than ok gives an *OpenError; a failure before
// anything was written wraps ErrNotSent.
//
// first, if not empty, is the start of the client's data (see ReadFirst).
// It travels in the same message as the request, and the agent passes it
// to the target once connected, so a client that speaks first loses no
// round trip to the handshake. An agent that refuses the stream drops it.
// When the reply does not come (a timeout, ctx, the tunnel's end) the agent
// may have connected and passed first on, so the stream is then aborted:
// the target sees a reset, as the client does, not a clean end.
func (s *Session) Open(ctx context.Context, req OpenRequest, first []byte) (*Stream, error) {
	st, _, err := s.open(ctx, req, first, nil)
	return st, err
}

// OpenConn is Open for client, a connection just accepted, whose first
// bytes (see ReadFirst) are first. When the client had sent nothing by
// then, OpenConn reads it once while it waits for the reply and sends what
// arrives, at most MaxFirst bytes, at once: a client whose first bytes came
// a moment after the accept, as they often do, loses no tunnel round trip
// either. Like first, they may reach the target, and an agent that refuses
// the stream drops them.
//
// It returns the client bytes the open carried, first included, also when
// it fails: a caller that tries another tunnel sends them again, and they
// count as sent. OpenConn has stopped reading client and cleared its read
// deadline when it returns. A client that failed meanwhile (a reset) fails
// the open with ErrClientGone whatever the agent answered, and the stream
// is aborted (closed, if the agent refused it); so do client bytes that
// could not be written on the stream.
func (s *Session) OpenConn(ctx context.Context, req OpenRequest, client net.Conn, first []byte) (*Stream, []byte, error) {
	return s.open(ctx, req, first, client)
}

func (s *Session) open(ctx context.Context, req OpenRequest, first []byte, client net.Conn) (*Stream, []byte, error) {
	buf, err := req.Append(make([]byte, 0, 4+len(req.Target)+len(req.ConnID)+len(first)))
	if err != nil {
		return nil, first, err
	}
	buf = append(buf, first...) // Open's own copy: smux may hold it after a timeout
	release := s.conn.hold()    // the SYN and the message travel together
	// smux picks the ID, then queues the SYN: concurrent opens could send
	// their SYNs out of ID order, and the agent, which accepts streams in
	// the order their SYNs arrive, relies on that order for resets that
	// overtake an accept. OpenStream returns once its SYN is written.
	s.openMu.Lock()
	sst, err := s.sm.OpenStream()
	s.openMu.Unlock()
	if err != nil {
		release()
		return nil, first, fmt.Errorf("open stream: %w (%w)", ErrSessionClosed, ErrNotSent)
	}
	st := s.register(sst)
	// Once client bytes went out, the agent may pass them on before any
	// reply: a stream that fails then is aborted, so that the target sees a
	// reset, as the client does, rather than a clean end.
	fail := func() {
		if len(first) > 0 {
			st.Abort()
		} else {
			st.Close()
		}
	}
	stop := handshakeDeadline(ctx, sst, s.set.HandshakeTimeout)
	defer stop()
	_, err = sst.Write(buf)
	release()
	if err != nil {
		fail()
		return nil, first, fmt.Errorf("send open request: %w", s.streamErr(err))
	}
	var early earlyRead
	if client != nil && len(first) == 0 {
		early.start(client, sst)
	}
	reply, err := ReadReply(sst)
	more, werr, cerr := early.stop()
	if len(more) > 0 {
		first = more
	}
	// A client that failed while we waited is gone whatever the reply:
	// its reset was read here and will not be read again (a second read
	// of a reset socket gives a clean EOF), so no other tunnel may be
	// tried for it, and the stream is aborted, not closed.
	clientGone := func(why error) error {
		return fmt.Errorf("%w: %w (%w)", ErrClientGone, cerr, why)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("wait for open reply: %w", ctx.Err())
		} else {
			err = fmt.Errorf("read open reply: %w", s.streamErr(err))
		}
		if cerr != nil {
			st.Abort()
			return nil, first, clientGone(err)
		}
		fail()
		return nil, first, err
	}
	if !stop() {
		fail()
		return nil, first, fmt.Errorf("wait for open reply: %w", ctx.Err())
	}
	sst.SetDeadline(time.Time{})
	if cerr != nil {
		if reply.Code == CodeOK {
			st.Abort()
		} else {
			st.Close()
		}
		return nil, first, clientGone(errors.New("open reply " + reply.Code.String()))
	}
	if reply.Code != CodeOK {
		st.Close()
		return nil, first, &OpenError{Reply: reply}
	}
	if werr != nil { // the client's bytes are gone: the connection must be cut
		st.Abort()
		return nil, first, fmt.Errorf("send client bytes: %w", s.streamErr(werr))
	}
	return st, first, nil
}

// earlyRead reads a client once while its open waits for the reply, and
// sends what arrives on the stream. It is owned by the open, which stops it
// and waits for it before it returns. The zero value is stopped.
type earlyRead struct {
	client net.Conn
	done   chan struct{}
	data   []byte // what was read (and sent)
	werr   error  // the write of data failed: it may not have reached the stream
	err    error  // a read error other than the end of data or the stop
}

func (e *earlyRead) start(client net.Conn, w io.Writer) {
	e.client, e.done = client, make(chan struct{})
	go func() {
		defer close(e.done)
		buf := firstBufs.Get().(*[]byte) // held for the whole wait: MaxFirst bytes, not a copy buffer
		defer firstBufs.Put(buf)
		n, err := client.Read(*buf)
		if n > 0 {
			e.data = bytes.Clone((*buf)[:n])
			_, e.werr = w.Write(e.data)
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			e.err = err
		}
	}()
}

// stop ends the read, waits for it and clears the client's read deadline;
// it returns what was read, the error of sending it on the stream, and the
// client's failure, if any.
func (e *earlyRead) stop() (data []byte, werr, cerr error) {
	if e.done == nil {
		return nil, nil, nil
	}
	e.client.SetReadDeadline(time.Unix(1, 0))
	<-e.done
	e.client.SetReadDeadline(time.Time{})
	return e.data, e.werr, e.err
}

// Accept waits for the next data stream (agent side). The caller reads the
// open request with Stream.ReadRequest and answers with Stream.Reply.
// Accept is for one goroutine at a time: streams are then accepted in the
// order the gateway opened them, which keeping a reset that overtakes its
// stream's accept relies on.
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	stop := context.AfterFunc(ctx, func() { s.sm.SetDeadline(time.Now()) })
	defer stop()
	sst, err := s.sm.AcceptStream()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ErrSessionClosed
	}
	return s.register(sst), nil
}

func (s *Session) streamErr(err error) error {
	select {
	case <-s.done:
		return ErrSessionClosed
	default:
	}
	if errors.Is(err, smux.ErrTimeout) {
		return fmt.Errorf("no answer from agent within %s: %w", s.set.HandshakeTimeout, context.DeadlineExceeded)
	}
	return err
}

func (s *Session) register(sst *smux.Stream) *Stream {
	st := &Stream{
		Stream:    sst,
		sess:      s,
		peerReset: make(chan struct{}),
		acked:     make(chan struct{}),
	}
	s.mu.Lock()
	s.streams[sst.ID()] = st
	s.lastID = max(s.lastID, sst.ID())
	early := s.early[sst.ID()]
	delete(s.early, sst.ID())
	s.mu.Unlock()
	if early {
		st.peerAborted()
	}
	return st
}

// maxEarly bounds the resets an agent keeps for streams it has not
// accepted yet. smux queues at most 1,024 streams for Accept, and one more
// can be between smux and register: more than twice that can only come
// from a peer that resets streams it never opened.
const maxEarly = 2048

// lookupOrRemember is lookup for a reset. A reset can overtake the
// stream's Accept (an open the gateway gave up on while the agent was too
// busy to accept it). The gateway sends its SYNs in stream ID order and
// the agent accepts in arrival order from one goroutine, so on the agent an
// ID above every one registered so far names a stream still waiting to be
// accepted, and its reset is kept for register to apply.
func (s *Session) lookupOrRemember(id uint32) *Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil && s.early != nil && id > s.lastID && len(s.early) < maxEarly {
		s.early[id] = true
	}
	return st
}

func (s *Session) lookup(id uint32) *Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[id]
}

func (s *Session) unregister(st *Stream) {
	s.mu.Lock()
	if s.streams[st.ID()] == st {
		delete(s.streams, st.ID())
	}
	s.mu.Unlock()
}

// readControl handles the control stream until the session ends.
func (s *Session) readControl() {
	defer s.wg.Done()
	for {
		m, err := ReadControl(s.ctrl)
		if err != nil {
			s.shutdown(fmt.Errorf("control stream: %w", err))
			return
		}
		switch m.Type {
		case TypePing:
			s.Send(Message{Type: TypePong, Seq: m.Seq})
		case TypePong:
			s.mu.Lock()
			sent, ok := s.pings[m.Seq]
			delete(s.pings, m.Seq)
			s.mu.Unlock()
			if ok {
				rtt := time.Since(sent)
				s.rtt.Store(int64(rtt))
				s.sm.SetRTT(s.minRTT(rtt))
			}
		case TypeReset:
			if st := s.lookupOrRemember(m.Stream); st != nil {
				st.peerAborted()
			}
			s.Send(Message{Type: TypeResetAck, Stream: m.Stream})
		case TypeResetAck:
			if st := s.lookup(m.Stream); st != nil {
				st.ackOnce.Do(func() { close(st.acked) })
			}
		case TypeDrain:
			s.draining.Store(true)
			s.onMessage(m)
		case TypeGoaway:
			s.onMessage(m)
		default:
			s.onMessage(m)
		}
	}
}

// rttSamples is how many round trips minRTT looks back on: with a ping
// every keepalive interval, 80 s by default.
const rttSamples = 8

// minRTT records rtt and returns the least of the recent round trips: the
// path's own delay, without the queueing that the tunnel's traffic adds
// to a ping. smux's window tuning takes it, so that a busy tunnel on a
// short path does not mistake its own queues for a long link and grow
// windows, and memory, it does not need.
func (s *Session) minRTT(rtt time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rtts[s.nrtt%rttSamples] = rtt
	s.nrtt++
	least := rtt
	for _, r := range s.rtts[:min(s.nrtt, rttSamples)] {
		least = min(least, r)
	}
	return least
}

// ErrKeepaliveTimeout ends a session whose peer was silent for the
// keepalive timeout while we were waiting to hear from it.
var ErrKeepaliveTimeout = errors.New("keepalive timeout: no data from the peer")

// ping measures the round trip on the control stream every keepalive
// interval, and closes the session once a read has waited for the peer
// longer than the keepalive timeout. The peer pings every interval, so a
// live link is never silent that long. (smux's own keepalive checks only once
// per timeout, which would let a dead link live up to twice as long; it
// stays as a backstop.)
func (s *Session) ping() {
	defer s.wg.Done()
	t := time.NewTicker(s.set.KeepaliveInterval)
	defer t.Stop()
	// Silence is checked every period; acting at timeout-period keeps the
	// detection within the timeout, but never below interval+period, which
	// a live link (pinged every interval) could reach.
	period := min(s.set.KeepaliveInterval, s.set.KeepaliveTimeout/8)
	limit := max(s.set.KeepaliveTimeout-period, s.set.KeepaliveInterval+period)
	watch := time.NewTicker(period)
	defer watch.Stop()
	if !s.sendPing() {
		return
	}
	for {
		select {
		case <-t.C:
			if !s.sendPing() {
				return
			}
		case now := <-watch.C:
			if d := s.conn.silentFor(now); d > limit {
				s.shutdown(fmt.Errorf("%w for %s", ErrKeepaliveTimeout, d.Round(time.Millisecond)))
				return
			}
		case <-s.done:
			return
		}
	}
}

func (s *Session) sendPing() bool {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.pings[seq] = time.Now()
	delete(s.pings, seq-4) // an unanswered ping is forgotten after a few intervals
	s.mu.Unlock()
	return s.Send(Message{Type: TypePing, Seq: seq}) == nil
}

// watch ends the session when smux does (keepalive timeout, I/O error).
func (s *Session) watch() {
	defer s.wg.Done()
	select {
	case <-s.sm.CloseChan():
		s.shutdown(fmt.Errorf("%w: no keepalive or I/O error", ErrTunnelClosed))
	case <-s.done:
	}
}

// rejectAgentStreams closes the session if the agent opens a stream: only
// the gateway may.
func (s *Session) rejectAgentStreams() {
	defer s.wg.Done()
	sst, err := s.sm.AcceptStream()
	if err != nil {
		return
	}
	sst.Close()
	s.shutdown(fmt.Errorf("%w: agent opened a stream", ErrProtocol))
}

func writeControl(w io.Writer, mu *sync.Mutex, m Message) error {
	b, err := AppendControl(nil, m)
	if err != nil {
		return err
	}
	if mu != nil {
		mu.Lock()
		defer mu.Unlock()
	}
	_, err = w.Write(b)
	return err
}
