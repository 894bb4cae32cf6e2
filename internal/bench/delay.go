package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DelayCommand is the hidden ferry-bench subcommand that runs one delay
// line (RunDelayLine), a child process so that its CPU is not counted as
// the measured path's.
const DelayCommand = "_delay"

// lineRead is the size of the delay line's reads: large, so that a fast
// sender costs few system calls and a paced line few timer wake-ups.
const lineRead = 256 << 10

// DefaultLineQueue is the queue of a delay line without a rate cap: what
// the line holds per direction of one connection, and so its own window.
const DefaultLineQueue = 64 << 20

// LineConfig is one delay line: client → TCP → [line] → TCP → To. Each
// direction of each connection is delayed by RTT/2 and, with a Rate,
// paced on its own, as Toxiproxy and a per-flow shaper do. The line
// terminates TCP on both sides: the two TCP connections see loopback, and
// the line's queue (Queue bytes per direction) is the only window that
// sees the delay.
type LineConfig struct {
	Listen string        // "127.0.0.1:0"
	To     string        // the upstream each accepted connection is relayed to
	RTT    time.Duration // round trip added; each direction waits RTT/2
	Rate   int64         // bytes per second per direction of each connection; 0: no cap
	Queue  int           // bytes read and not yet delivered, per direction; 0: LineQueue(RTT, Rate)
}

// LineQueue is the default queue of a line: with a rate cap, its
// bandwidth-delay product over the whole round trip plus 4 MiB of slack;
// without one, DefaultLineQueue.
func LineQueue(rtt time.Duration, rate int64) int {
	if rate <= 0 {
		return DefaultLineQueue
	}
	return int(float64(rate)*rtt.Seconds()) + 4<<20
}

// Validate reports the first bad setting.
func (c LineConfig) Validate() error {
	switch {
	case c.To == "":
		return errors.New("delay line: no upstream address")
	case c.RTT < 0 || c.Rate < 0 || c.Queue < 0:
		return errors.New("delay line: negative round trip, rate or queue")
	case c.Queue > 0 && c.Queue < lineRead:
		return fmt.Errorf("delay line: queue %d smaller than one read (%d)", c.Queue, lineRead)
	}
	return nil
}

// DelayLine is a listening delay line. Serve runs it; it is not safe to
// call Serve twice.
type DelayLine struct {
	cfg LineConfig
	ln  net.Listener

	bufs sync.Pool // *[]byte of lineRead bytes, delivered and free again

	mu        sync.Mutex
	maxQueued int // the most bytes any one direction held (for the tests)
}

func (d *DelayLine) getBuf() []byte {
	if b, ok := d.bufs.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, lineRead)
}

func (d *DelayLine) putBuf(b []byte) {
	if cap(b) == lineRead {
		b = b[:lineRead]
		d.bufs.Put(&b)
	}
}

// ListenDelayLine checks cfg and listens on cfg.Listen.
func ListenDelayLine(cfg LineConfig) (*DelayLine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Queue == 0 {
		cfg.Queue = LineQueue(cfg.RTT, cfg.Rate)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("delay line: listen: %w", err)
	}
	return &DelayLine{cfg: cfg, ln: ln}, nil
}

// Addr is where the line accepts connections.
func (d *DelayLine) Addr() net.Addr { return d.ln.Addr() }

// Serve relays every accepted connection until ctx ends, then closes the
// listener and every connection and returns once all have ended.
func (d *DelayLine) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { d.ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors: wait for some to be freed, go on.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		wg.Go(func() { d.serveConn(ctx, c.(*net.TCPConn)) })
	}
}

// RunDelayLine listens, writes "delay line listening addr=ADDR queue=N" to
// out, and relays until ctx ends.
func RunDelayLine(ctx context.Context, cfg LineConfig, out io.Writer) error {
	d, err := ListenDelayLine(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "delay line listening addr=%s queue=%d rtt=%s rate=%d\n", d.Addr(), d.cfg.Queue, d.cfg.RTT, d.cfg.Rate)
	return d.Serve(ctx)
}

// serveConn dials the upstream for the accepted connection a and relays
// both directions through a lane each. A half-close passes on once the
// data before it has been delivered; a reset (a read or write error on
// either side) resets both sides at once, with linger 0.
func (d *DelayLine) serveConn(ctx context.Context, a *net.TCPConn) {
	dl := net.Dialer{Timeout: 10 * time.Second}
	bc, err := dl.DialContext(ctx, "tcp", d.cfg.To)
	if err != nil {
		resetConn(a)
		return
	}
	b := bc.(*net.TCPConn)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	abort := func() {
		once.Do(func() {
			resetConn(a)
			resetConn(b)
			cancel()
		})
	}
	// The line shutting down closes both sides, which ends every read and
	// write below.
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()

	up, down := d.newLane(a), d.newLane(b)
	var wg sync.WaitGroup
	run := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				abort()
			}
		})
	}
	run(func() error { return up.read(ctx) })
	run(func() error { return up.write(ctx, b) })
	run(func() error { return down.read(ctx) })
	run(func() error { return down.write(ctx, a) })
	wg.Wait()
	a.Close()
	b.Close()
}

// resetConn closes c with a reset (linger 0) instead of a FIN.
func resetConn(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// segment is one read's bytes (or the end of the stream) and when the
// line releases it.
type segment struct {
	b   []byte
	eof bool
	at  time.Time
}

// lane is one direction of one connection: a reader that stamps each read
// with its release time and queues it, and a writer that delivers each
// segment at its time. The reader waits while the queue holds queue bytes.
type lane struct {
	line  *DelayLine
	src   *net.TCPConn
	delay time.Duration
	rate  float64 // bytes per second; 0: no cap
	bound int

	mu      sync.Mutex
	q       []segment
	queued  int  // bytes (of buffer capacity) held: queued or being written
	waiting bool // the reader waits for room, watching src for a reset
	last    time.Time
	more    chan struct{} // a segment was queued (capacity 1)
}

func (d *DelayLine) newLane(src *net.TCPConn) *lane {
	return &lane{
		line: d, src: src, delay: d.cfg.RTT / 2, rate: float64(d.cfg.Rate), bound: d.cfg.Queue,
		more: make(chan struct{}, 1),
	}
}

// releaseAt is when a segment of n bytes read at now leaves the line: the
// one-way delay after its arrival, and with a rate cap no sooner than the
// previous segment's release plus n bytes' time at the rate. Call with
// l.mu held.
func (l *lane) releaseAt(now time.Time, n int) time.Time {
	at := now.Add(l.delay)
	if l.rate > 0 {
		if paced := l.last.Add(time.Duration(float64(n) / l.rate * float64(time.Second))); paced.After(at) {
			at = paced
		}
	}
	if at.Before(l.last) {
		at = l.last
	}
	l.last = at
	return at
}

// read fills the queue from src until EOF (queued as a half-close) or an
// error (returned: the connection is reset).
func (l *lane) read(ctx context.Context) error {
	buf := l.line.getBuf()
	defer func() { l.line.putBuf(buf) }()
	for {
		if err := l.waitRoom(ctx); err != nil {
			return err
		}
		n, err := l.src.Read(buf)
		now := time.Now()
		if n > 0 {
			seg := buf[:n]
			if n < lineRead/4 {
				// A small read keeps a small copy, so that the bound
				// counts what the line really holds.
				seg = make([]byte, n)
				copy(seg, buf[:n])
			} else {
				buf = l.line.getBuf()
			}
			l.push(segment{b: seg}, now)
		}
		if errors.Is(err, io.EOF) {
			l.push(segment{eof: true}, now)
			return nil
		}
		if err != nil {
			return fmt.Errorf("delay line read: %w", err)
		}
	}
}

func (l *lane) push(s segment, now time.Time) {
	l.mu.Lock()
	s.at = l.releaseAt(now, len(s.b))
	l.q = append(l.q, s)
	l.queued += cap(s.b)
	l.line.noteQueued(l.queued)
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
}

func (d *DelayLine) noteQueued(n int) {
	d.mu.Lock()
	d.maxQueued = max(d.maxQueued, n)
	d.mu.Unlock()
}

// waitRoom returns once one more full read fits in the queue. While it
// waits, src is not read, so a reset from the sender would go unseen: it
// watches src for a socket error meanwhile (watchReset), and the writer
// ends that watch when it frees room by setting src's read deadline.
// Both sides touch the deadline only with l.mu held and l.waiting set, so
// the deadline never reaches a real read.
func (l *lane) waitRoom(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.queued+lineRead <= l.bound {
			l.mu.Unlock()
			return nil
		}
		l.waiting = true
		l.mu.Unlock()
		err := watchReset(l.src)
		l.mu.Lock()
		l.waiting = false
		l.src.SetReadDeadline(time.Time{})
		l.mu.Unlock()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// pop takes the next segment, waiting for one.
func (l *lane) pop(ctx context.Context) (segment, error) {
	for {
		l.mu.Lock()
		if len(l.q) > 0 {
			s := l.q[0]
			l.q[0] = segment{}
			l.q = l.q[1:]
			l.mu.Unlock()
			return s, nil
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-ctx.Done():
			return segment{}, ctx.Err()
		}
	}
}

// write delivers each segment to dst at its release time, and the
// half-close after the last.
func (l *lane) write(ctx context.Context, dst *net.TCPConn) error {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		s, err := l.pop(ctx)
		if err != nil {
			return err
		}
		// The emulated delay: the segment is in flight until then.
		if d := time.Until(s.at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if s.eof {
			if err := dst.CloseWrite(); err != nil {
				return fmt.Errorf("delay line half-close: %w", err)
			}
			return nil
		}
		_, err = dst.Write(s.b)
		held := cap(s.b)
		l.line.putBuf(s.b)
		l.mu.Lock()
		l.queued -= held
		if l.waiting {
			l.src.SetReadDeadline(time.Now()) // ends the reader's watchReset
		}
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("delay line write: %w", err)
		}
	}
}
