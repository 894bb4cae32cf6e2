package tunnel

import (
	"context"
	"net"
	"slices"
	"sync"

	"github.com/coder/websocket"
)

// A WebSocket message reaches TLS as several writes: coder/websocket
// writes a frame header and then the payload, and a client masks its
// payload through a 4 KiB buffer, so one 32 KiB smux frame from the agent
// became eight TLS records and eight write(2) calls. batchConn sits under
// TLS and gathers the records of one message into one write; the wrapper
// over the WebSocket byte stream marks where a message begins and ends.
// Nothing waits for more data: the batch is written as soon as the message
// is.

// maxBatch bounds what one batch holds; a larger message is written in
// pieces of this size. It holds the largest message package mux sends
// (256 KiB) with its TLS and WebSocket overhead.
const maxBatch = 512 << 10

// batchConn is the TCP connection under TLS. Outside a batch, writes go
// straight through.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxBatch {
			return c.Conn.Write(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

func (c *batchConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > maxBatch {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// batchedStream is the WebSocket byte stream: each Write is one message,
// gathered by each of layers and written to the TCP connection in one
// batch.
//
// The gateway has one layer, under TLS. The agent, a WebSocket client, has
// a second one above TLS: coder/websocket masks a client's payload through
// its 4 KiB write buffer and writes each 4 KiB on, so without it every
// record the agent sent held 4 KiB instead of 16, and encrypting,
// decrypting and reading them cost both sides four times the per-record
// work (download throughput 0.76x → 0.82x the TLS forwarder with 8
// connections, docs/performance.md).
type batchedStream struct {
	net.Conn
	layers []*batchConn // outermost first
}

func (s batchedStream) Write(p []byte) (int, error) {
	for _, l := range s.layers {
		l.begin()
	}
	n, err := s.Conn.Write(p)
	// Outermost first: each layer's batch flows into the next while that
	// one still gathers.
	for _, l := range s.layers {
		if ferr := l.end(); err == nil {
			err = ferr
		}
	}
	return n, err
}

// tunnelStream is the tunnel's byte stream over c (see stream), written
// through layers (outermost first, the TCP connection's own last; nil ones
// are skipped), whose addresses it reports.
func tunnelStream(life context.Context, c *websocket.Conn, layers ...*batchConn) net.Conn {
	layers = slices.DeleteFunc(slices.Clone(layers), func(l *batchConn) bool { return l == nil })
	if len(layers) == 0 {
		return newStream(life, c, nil)
	}
	return batchedStream{Conn: newStream(life, c, layers[len(layers)-1]), layers: layers}
}

// Listener wraps the gateway's tunnel listener (under TLS) so that the
// tunnel handler can batch each WebSocket message into one write. Use it
// with ConnContext in the http.Server.
func Listener(ln net.Listener) net.Listener { return batchListener{ln} }

type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c}, nil
}

type batchKey struct{}

// ConnContext is the http.Server ConnContext hook that lets the tunnel
// handler find the batching connection under a request's TLS connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	if bc, ok := c.(*batchConn); ok {
		return context.WithValue(ctx, batchKey{}, bc)
	}
	return ctx
}

func batchFrom(ctx context.Context) *batchConn {
	bc, _ := ctx.Value(batchKey{}).(*batchConn)
	return bc
}
