package testutil

import (
	"net"
	"sync"
	"testing"
)

// Forwarder relays TCP connections from its own address to a fixed one,
// byte for byte (TLS passes through untouched). CutAll tears every relayed
// connection down at once, as a broken path would; FreezeAll stops relaying
// on them without closing anything, as a silently dead link would.
type Forwarder struct {
	Addr string
	to   string
	ln   net.Listener

	mu     sync.Mutex
	pairs  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

// pair is one relayed connection: the accepted side and the dialled side.
type pair struct {
	in, out    net.Conn
	frozen     chan struct{} // closed when the pair stops relaying
	freezeOnce sync.Once
}

// NewForwarder relays 127.0.0.1:0 to to; stopped at cleanup.
func NewForwarder(t testing.TB, to string) *Forwarder {
	t.Helper()
	f := &Forwarder{to: to, ln: listen(t), pairs: map[*pair]struct{}{}}
	f.Addr = f.ln.Addr().String()
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.Close)
	return f
}

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", f.to)
		if err != nil {
			in.Close()
			continue
		}
		p := &pair{in: in, out: out, frozen: make(chan struct{})}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		f.pairs[p] = struct{}{}
		f.wg.Add(2)
		f.mu.Unlock()
		go f.relay(p, out, in)
		go f.relay(p, in, out)
	}
}

// relay copies src to dst until either fails or the pair freezes; then it
// holds the bytes it has and waits for the pair to be closed.
func (f *Forwarder) relay(p *pair, dst, src net.Conn) {
	defer f.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			return // a frozen link delivers nothing more
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	// Either side ending ends the pair: a relay keeps no half-open links.
	f.drop(p, false)
}

func (f *Forwarder) drop(p *pair, reset bool) {
	f.mu.Lock()
	_, ok := f.pairs[p]
	delete(f.pairs, p)
	f.mu.Unlock()
	if !ok {
		return
	}
	if reset {
		for _, c := range []net.Conn{p.in, p.out} {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
		}
	}
	p.in.Close()
	p.out.Close()
}

func (f *Forwarder) all() []*pair {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*pair, 0, len(f.pairs))
	for p := range f.pairs {
		out = append(out, p)
	}
	return out
}

// Active is the number of relayed connections.
func (f *Forwarder) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pairs)
}

// CutAll resets every relayed connection on both sides (linger 0) and
// returns how many there were. The forwarder keeps accepting new ones.
func (f *Forwarder) CutAll() int {
	ps := f.all()
	for _, p := range ps {
		f.drop(p, true)
	}
	return len(ps)
}

// FreezeAll stops relaying on every current connection, closing nothing:
// bytes sent on them vanish, as on a dead network path. The endpoints must
// find out by their own keepalives. New connections are relayed as usual.
// It returns how many were frozen.
func (f *Forwarder) FreezeAll() int {
	ps := f.all()
	for _, p := range ps {
		p.freezeOnce.Do(func() { close(p.frozen) })
	}
	return len(ps)
}

// Close stops accepting and resets every connection.
func (f *Forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.ln.Close()
	f.CutAll()
	f.wg.Wait()
}
