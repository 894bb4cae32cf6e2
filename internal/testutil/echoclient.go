package testutil

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// EchoOpts describe one round trip through an echo service.
type EchoOpts struct {
	Size       int           // bytes to send (0 is allowed: a bare half-close)
	Seed       uint64        // the content and write sizes derive from it
	Chunk      int           // largest single write; default 64 KiB (writes vary from 1 byte to Chunk)
	Pause      time.Duration // between writes: a long, slow transfer
	CloseDelay time.Duration // wait after the last write before half-closing
	Timeout    time.Duration // for the whole round trip; default 60 s
}

// EchoResult is how a round trip ended.
type EchoResult struct {
	Sent, Received int64
	// Err is nil when every byte came back intact followed by a clean EOF.
	Err error
	// Corrupt is set when the connection ended cleanly (EOF) yet what came
	// back differs from what was sent: bytes lost, added or changed. A
	// connection that breaks with an error (a reset) is not corrupt.
	Corrupt bool
	// Dialled is false when the connection could not even be opened.
	Dialled bool
}

// EchoRoundTrip connects to addr (an echo service), sends o.Size
// pseudo-random bytes in writes of random size while reading the echo
// concurrently, half-closes, reads to EOF and compares the SHA-256 of both
// directions.
func EchoRoundTrip(addr string, o EchoOpts) EchoResult {
	if o.Chunk <= 0 {
		o.Chunk = 64 << 10
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	var res EchoResult
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		res.Err = fmt.Errorf("dial: %w", err)
		return res
	}
	res.Dialled = true
	defer c.Close()
	c.SetDeadline(time.Now().Add(o.Timeout))

	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	sizes := rand.New(rand.NewPCG(o.Seed+1, o.Seed))
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, o.Chunk)
		left := o.Size
		for left > 0 {
			n := min(left, 1+sizes.IntN(o.Chunk))
			b := buf[:n]
			fill(rng, b)
			sent.Write(b)
			if _, err := c.Write(b); err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
			res.Sent += int64(n)
			left -= n
			if o.Pause > 0 {
				time.Sleep(o.Pause)
			}
		}
		if o.CloseDelay > 0 {
			time.Sleep(o.CloseDelay)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			werr <- fmt.Errorf("half-close: %w", err)
			return
		}
		werr <- nil
	}()
	got := sha256.New()
	n, rerr := io.Copy(got, c)
	res.Received = n
	if rerr != nil {
		c.Close() // unblocks the writer
	}
	wErr := <-werr
	switch {
	case rerr != nil:
		res.Err = fmt.Errorf("read after %d bytes: %w", n, rerr)
	case wErr != nil:
		// The writer saw the reset. Linux reports a reset once, to the
		// first call that asks, so the reader may then see a plain EOF:
		// this is a broken connection, not a clean end.
		res.Err = fmt.Errorf("%w (%d bytes read back)", wErr, n)
	case res.Received != int64(o.Size) || !bytes.Equal(sent.Sum(nil), got.Sum(nil)):
		res.Corrupt = true
		res.Err = fmt.Errorf("clean end of data, but sent %d bytes and got %d back (or different bytes): data lost or changed", o.Size, res.Received)
	}
	return res
}

func fill(r *rand.Rand, b []byte) {
	for len(b) >= 8 {
		v := r.Uint64()
		for i := range 8 {
			b[i] = byte(v >> (8 * i))
		}
		b = b[8:]
	}
	v := r.Uint64()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}
