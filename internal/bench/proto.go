package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The sink protocol. A connection's first byte chooses what it does:
//
//	'e'                     echo: the sink answers 'e', then echoes every byte until EOF
//	'U' off(8)              upload: the sink answers 'R', reads and checks the pattern
//	                        from off until EOF, then writes a trailer
//	'D' off(8) dur(8, ns)   download: the sink answers 'R', waits for 'G', writes the
//	                        pattern from off for dur, then a trailer, then FIN
//	'S' group(8)            stalled target: the sink answers 'R' and never reads
//	                        again; the connection joins group
//	'X' group(8)            command: the sink resets (linger 0) every stalled
//	                        connection of group and answers 'X' and their count (8)
//
// A trailer is 4 bytes ("GOOD" or "BAD!") and the count of pattern bytes the
// sink read (upload) or wrote (download), 8 bytes big endian.
const (
	modeEcho     = 'e'
	modeUpload   = 'U'
	modeDownload = 'D'
	modeStall    = 'S'
	modeReset    = 'X'
	replyReady   = 'R'
	goByte       = 'G'
	trailerLen   = 12
	chunk        = 64 << 10 // bytes per write of bulk data
)

var (
	magicGood = [4]byte{'G', 'O', 'O', 'D'}
	magicBad  = [4]byte{'B', 'A', 'D', '!'}
)

// ErrCorrupt marks data that did not arrive as sent: a wrong, missing or
// extra byte. A run that sees it is invalid.
var ErrCorrupt = errors.New("data corrupted")

// dialTimeout bounds every client dial.
const dialTimeout = 10 * time.Second

// Sink serves the sink protocol on any number of listeners. Its stalled
// connections are shared by all of them, so that a reset command may come
// on any port. Safe for concurrent use.
type Sink struct {
	pat *Pattern

	mu      sync.Mutex
	stalled map[uint64][]*net.TCPConn // group → stalled connections not yet reset
}

// NewSink makes a sink that checks and writes pat.
func NewSink(pat *Pattern) *Sink {
	return &Sink{pat: pat, stalled: map[uint64][]*net.TCPConn{}}
}

// Serve accepts connections on ln and serves the sink protocol until ln
// is closed; then it closes every connection it serves and returns. (The
// stalled targets it filed stay open until a reset command or Close.)
func (s *Sink) Serve(ln net.Listener) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: wait, go on
			continue
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			s.serveConn(c.(*net.TCPConn))
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
}

// Close closes the stalled connections that no command has reset.
func (s *Sink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for g, cs := range s.stalled {
		for _, c := range cs {
			c.Close()
		}
		delete(s.stalled, g)
	}
}

func (s *Sink) serveConn(c *net.TCPConn) {
	var hdr [17]byte
	if _, err := io.ReadFull(c, hdr[:1]); err != nil {
		c.Close()
		return
	}
	switch hdr[0] {
	case modeStall:
		if _, err := io.ReadFull(c, hdr[1:9]); err != nil {
			c.Close()
			return
		}
		if _, err := c.Write([]byte{replyReady}); err != nil {
			c.Close()
			return
		}
		// Never read again: the connection stays open, unread, until a
		// reset command or Close.
		g := binary.BigEndian.Uint64(hdr[1:9])
		s.mu.Lock()
		s.stalled[g] = append(s.stalled[g], c)
		s.mu.Unlock()
		return
	}
	defer c.Close()
	switch hdr[0] {
	case modeEcho:
		sinkEcho(c)
	case modeUpload:
		if _, err := io.ReadFull(c, hdr[1:9]); err != nil {
			return
		}
		sinkUpload(c, s.pat, int64(binary.BigEndian.Uint64(hdr[1:9])))
	case modeDownload:
		if _, err := io.ReadFull(c, hdr[1:17]); err != nil {
			return
		}
		sinkDownload(c, s.pat, int64(binary.BigEndian.Uint64(hdr[1:9])), time.Duration(binary.BigEndian.Uint64(hdr[9:17])))
	case modeReset:
		if _, err := io.ReadFull(c, hdr[1:9]); err != nil {
			return
		}
		g := binary.BigEndian.Uint64(hdr[1:9])
		s.mu.Lock()
		cs := s.stalled[g]
		delete(s.stalled, g)
		s.mu.Unlock()
		for _, sc := range cs {
			resetConn(sc)
		}
		var ans [9]byte
		ans[0] = modeReset
		binary.BigEndian.PutUint64(ans[1:], uint64(len(cs)))
		c.Write(ans[:])
	}
}

func sinkEcho(c *net.TCPConn) {
	buf := make([]byte, 512) // echo carries small messages only
	buf[0] = modeEcho
	if _, err := c.Write(buf[:1]); err != nil {
		return
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				c.CloseWrite()
			}
			return
		}
	}
}

func sinkUpload(c *net.TCPConn, pat *Pattern, off int64) {
	if _, err := c.Write([]byte{replyReady}); err != nil {
		return
	}
	buf := make([]byte, 2*chunk)
	var got int64
	magic := magicGood
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if !pat.Match(off+got, buf[:n]) {
				magic = magicBad
				break
			}
			got += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	writeTrailer(c, magic, got)
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

func sinkDownload(c *net.TCPConn, pat *Pattern, off int64, dur time.Duration) {
	if _, err := c.Write([]byte{replyReady}); err != nil {
		return
	}
	var g [1]byte
	if _, err := io.ReadFull(c, g[:]); err != nil || g[0] != goByte {
		return
	}
	var sent int64
	for deadline := time.Now().Add(dur); time.Now().Before(deadline); {
		n, err := c.Write(pat.At(off+sent, chunk))
		sent += int64(n)
		if err != nil {
			return
		}
	}
	if writeTrailer(c, magicGood, sent) != nil {
		return
	}
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

func writeTrailer(w io.Writer, magic [4]byte, n int64) error {
	var t [trailerLen]byte
	copy(t[:4], magic[:])
	binary.BigEndian.PutUint64(t[4:], uint64(n))
	_, err := w.Write(t[:])
	return err
}

// request dials addr, sends hdr and waits for the one-byte answer want.
func request(addr string, hdr []byte, want byte) (*net.TCPConn, error) {
	return requestBy(addr, hdr, want, time.Now().Add(dialTimeout))
}

// requestBy is request with every step bound by deadline.
func requestBy(addr string, hdr []byte, want byte, deadline time.Time) (*net.TCPConn, error) {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := nc.(*net.TCPConn)
	c.SetDeadline(deadline)
	var b [1]byte
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, fmt.Errorf("send request: %w", err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("read answer to request: %w", err)
	}
	c.SetDeadline(time.Time{})
	if b[0] != want {
		c.Close()
		return nil, fmt.Errorf("%w: answer %q to request, want %q", ErrCorrupt, b[0], want)
	}
	return c, nil
}

// OpenEcho opens an echo connection to addr and completes its first
// one-byte round trip.
func OpenEcho(addr string) (*net.TCPConn, error) {
	return request(addr, []byte{modeEcho}, modeEcho)
}

// EchoByte sends one byte b on an echo connection and waits for it back.
// one is a caller-owned 1-byte buffer, so that the call allocates nothing.
func EchoByte(c *net.TCPConn, b byte, one []byte) error {
	one[0] = b
	if _, err := c.Write(one[:1]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, one[:1]); err != nil {
		return err
	}
	if one[0] != b {
		return fmt.Errorf("%w: echo of %#x came back as %#x", ErrCorrupt, b, one[0])
	}
	return nil
}

// Upload is one prepared upload connection.
type Upload struct {
	c   *net.TCPConn
	off int64
}

// PrepareUpload connects and waits until the sink is ready to read.
func PrepareUpload(addr string, off int64) (*Upload, error) {
	return prepareUpload(addr, off, time.Now().Add(dialTimeout))
}

func prepareUpload(addr string, off int64, deadline time.Time) (*Upload, error) {
	hdr := make([]byte, 9)
	hdr[0] = modeUpload
	binary.BigEndian.PutUint64(hdr[1:], uint64(off))
	c, err := requestBy(addr, hdr, replyReady, deadline)
	if err != nil {
		return nil, err
	}
	return &Upload{c: c, off: off}, nil
}

// Run writes the pattern until until, half-closes, and checks the sink's
// trailer: every byte must have arrived intact. It returns the bytes sent
// and closes the connection.
func (u *Upload) Run(pat *Pattern, until time.Time) (int64, error) {
	return u.RunBy(pat, until, time.Time{})
}

// RunBy is Run with every write and the wait for the trailer bound by
// deadline (none if zero): past it, the error wraps
// os.ErrDeadlineExceeded and the connection is reset.
func (u *Upload) RunBy(pat *Pattern, until, deadline time.Time) (int64, error) {
	defer u.c.Close()
	trailerBy := deadline
	if deadline.IsZero() {
		trailerBy = time.Time{} // set once the writes are done
	} else {
		defer func() {
			if time.Now().After(deadline) {
				u.c.SetLinger(0)
			}
		}()
	}
	u.c.SetWriteDeadline(deadline)
	var sent int64
	for time.Now().Before(until) {
		n, err := u.c.Write(pat.At(u.off+sent, chunk))
		sent += int64(n)
		if err != nil {
			return sent, fmt.Errorf("upload write: %w", err)
		}
	}
	if err := u.c.CloseWrite(); err != nil {
		return sent, fmt.Errorf("upload half-close: %w", err)
	}
	if trailerBy.IsZero() {
		trailerBy = time.Now().Add(60 * time.Second)
	}
	u.c.SetReadDeadline(trailerBy)
	var t [trailerLen]byte
	if _, err := io.ReadFull(u.c, t[:]); err != nil {
		return sent, fmt.Errorf("upload: read the sink's trailer: %w", err)
	}
	got := int64(binary.BigEndian.Uint64(t[4:]))
	if [4]byte(t[:4]) != magicGood {
		return sent, fmt.Errorf("%w: upload: the sink found a wrong byte after %d of %d bytes", ErrCorrupt, got, sent)
	}
	if got != sent {
		return sent, fmt.Errorf("%w: upload: sent %d bytes, the sink read %d", ErrCorrupt, sent, got)
	}
	return sent, nil
}

// Close drops a prepared connection that will not run.
func (u *Upload) Close() { u.c.Close() }

// Download is one prepared download connection.
type Download struct {
	c   *net.TCPConn
	off int64
}

// PrepareDownload connects and asks the sink for dur of pattern from off;
// the sink starts when Run says go.
func PrepareDownload(addr string, off int64, dur time.Duration) (*Download, error) {
	return prepareDownload(addr, off, dur, time.Now().Add(dialTimeout))
}

func prepareDownload(addr string, off int64, dur time.Duration, deadline time.Time) (*Download, error) {
	hdr := make([]byte, 17)
	hdr[0] = modeDownload
	binary.BigEndian.PutUint64(hdr[1:], uint64(off))
	binary.BigEndian.PutUint64(hdr[9:], uint64(dur))
	c, err := requestBy(addr, hdr, replyReady, deadline)
	if err != nil {
		return nil, err
	}
	return &Download{c: c, off: off}, nil
}

// Run starts the transfer and reads and checks every byte until the sink's
// end, whose trailer must count exactly the bytes read. buf (at least a few
// KiB) is the caller's read buffer. It returns the pattern bytes received
// and closes the connection.
func (d *Download) Run(pat *Pattern, buf []byte) (int64, error) {
	return d.RunBy(pat, buf, time.Now().Add(10*time.Minute))
}

// RunBy is Run with the reads bound by deadline: past it, the error wraps
// os.ErrDeadlineExceeded and the connection is reset. The bytes returned
// are those checked by then.
func (d *Download) RunBy(pat *Pattern, buf []byte, deadline time.Time) (int64, error) {
	defer d.c.Close()
	defer func() {
		if time.Now().After(deadline) {
			d.c.SetLinger(0)
		}
	}()
	if _, err := d.c.Write([]byte{goByte}); err != nil {
		return 0, fmt.Errorf("download start: %w", err)
	}
	d.c.SetReadDeadline(deadline)
	var got int64
	h := 0 // bytes held at the start of buf: they may be the trailer
	for {
		n, err := d.c.Read(buf[h:])
		h += n
		if h > trailerLen {
			v := h - trailerLen
			if !pat.Match(d.off+got, buf[:v]) {
				return got, fmt.Errorf("%w: download: wrong byte within %d bytes after %d", ErrCorrupt, v, got)
			}
			got += int64(v)
			h = copy(buf, buf[v:h])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, fmt.Errorf("download read: %w", err)
		}
	}
	if h != trailerLen || [4]byte(buf[:4]) != magicGood {
		return got, fmt.Errorf("%w: download: the stream ended without the sink's trailer after %d bytes", ErrCorrupt, got)
	}
	if sent := int64(binary.BigEndian.Uint64(buf[4:trailerLen])); sent != got {
		return got, fmt.Errorf("%w: download: the sink sent %d bytes, %d arrived", ErrCorrupt, sent, got)
	}
	return got, nil
}

// Close drops a prepared connection that will not run.
func (d *Download) Close() { d.c.Close() }

// openStalledDownload asks the sink for a download that outlasts the run
// and starts it; the caller never reads the connection. Every step is
// bound by deadline.
func openStalledDownload(addr string, off int64, deadline time.Time) (*net.TCPConn, error) {
	hdr := make([]byte, 17)
	hdr[0] = modeDownload
	binary.BigEndian.PutUint64(hdr[1:], uint64(off))
	binary.BigEndian.PutUint64(hdr[9:], uint64(time.Hour))
	return requestBy(addr, hdr, replyReady, deadline)
}

// startStalledDownload lets an open stalled download begin.
func startStalledDownload(c *net.TCPConn) error {
	c.SetWriteDeadline(time.Now().Add(dialTimeout))
	defer c.SetWriteDeadline(time.Time{})
	if _, err := c.Write([]byte{goByte}); err != nil {
		return fmt.Errorf("start stalled download: %w", err)
	}
	return nil
}

// openStalledTarget opens a connection whose target never reads after the
// handshake; the sink files it under group for resetStalled.
func openStalledTarget(addr string, group uint64, deadline time.Time) (*net.TCPConn, error) {
	hdr := make([]byte, 9)
	hdr[0] = modeStall
	binary.BigEndian.PutUint64(hdr[1:], group)
	return requestBy(addr, hdr, replyReady, deadline)
}

// resetStalled tells the sink at addr (directly, not through a path) to
// reset every stalled target connection of group; it returns how many.
func resetStalled(addr string, group uint64) (int, error) {
	hdr := make([]byte, 9)
	hdr[0] = modeReset
	binary.BigEndian.PutUint64(hdr[1:], group)
	c, err := requestBy(addr, hdr, modeReset, time.Now().Add(dialTimeout))
	if err != nil {
		return 0, fmt.Errorf("reset stalled targets: %w", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(dialTimeout))
	var n [8]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return 0, fmt.Errorf("reset stalled targets: read the count: %w", err)
	}
	return int(binary.BigEndian.Uint64(n[:])), nil
}
