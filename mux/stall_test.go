package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// stallHarness proxies many connections over one session pair, as a
// gateway and an agent do: each client connection is a stream, and the
// agent dials a target server whose behaviour the client's first byte
// chooses:
//
//	'W' write to the client without end (a stalled download when the
//	    client does not read)
//	'S' read nothing more (a stalled upload when the client writes)
//	'D' write total bytes of pattern, then FIN
//	'U' read total bytes, check them, answer "ok", then FIN
type stallHarness struct {
	t        *testing.T
	gw, ag   *Session
	target   net.Listener
	total    int
	wg       sync.WaitGroup
	mu       sync.Mutex
	targets  []*net.TCPConn // in accept order
	accepted chan *net.TCPConn
	quit     chan struct{} // closed by the cleanup
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

func newStallHarness(t *testing.T, transport string, total int) *stallHarness {
	h := &stallHarness{t: t, total: total, accepted: make(chan *net.TCPConn, 256), quit: make(chan struct{})}
	h.gw, h.ag = sessionPair(t, transport)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.target = ln
	h.wg.Add(2)
	go h.serveTargets()
	go h.serveAgent()
	t.Cleanup(func() {
		close(h.quit)
		ln.Close()
		h.gw.Close()
		h.ag.Close()
		h.mu.Lock()
		for _, c := range h.targets {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *stallHarness) serveTargets() {
	defer h.wg.Done()
	for {
		c, err := h.target.Accept()
		if err != nil {
			return
		}
		tc := c.(*net.TCPConn)
		h.mu.Lock()
		h.targets = append(h.targets, tc)
		h.mu.Unlock()
		h.accepted <- tc
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.target1(tc)
		}()
	}
}

func (h *stallHarness) target1(c *net.TCPConn) {
	var cmd [1]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return
	}
	switch cmd[0] {
	case 'W':
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case 'S':
		<-h.quit
	case 'D':
		c.Write(pattern(h.total))
		c.CloseWrite()
		io.Copy(io.Discard, c)
	case 'U':
		got, err := io.ReadAll(c)
		if err == nil && bytes.Equal(got, pattern(h.total)) {
			c.Write([]byte("ok"))
		}
		c.CloseWrite()
	}
}

func (h *stallHarness) serveAgent() {
	defer h.wg.Done()
	for {
		st, err := h.ag.Accept(context.Background())
		if err != nil {
			return
		}
		if _, err := st.ReadRequest(); err != nil {
			st.Close()
			continue
		}
		c, err := net.Dial("tcp", h.target.Addr().String())
		if err != nil {
			st.Reply(Reply{Code: CodeDialFailed})
			st.Close()
			continue
		}
		st.Reply(Reply{Code: CodeOK})
		h.wg.Add(1)
		Start(context.Background(), c.(*net.TCPConn), st, func(PipeResult) { h.wg.Done() })
	}
}

// dial opens one proxied connection and sends cmd; a stalled download's
// client has small socket buffers, so that its stop is felt at once. It
// may run on any goroutine: it reports failures, rather than calling
// t.Fatal.
func (h *stallHarness) dial(cmd byte) (*net.TCPConn, error) {
	a, b := tcpPair(h.t)
	cli, gwSide := b.(*net.TCPConn), a.(*net.TCPConn)
	if cmd == 'W' {
		cli.SetReadBuffer(4 << 10)
		gwSide.SetWriteBuffer(4 << 10)
	}
	st, err := h.gw.Open(context.Background(), OpenRequest{Target: "target:1"}, nil)
	if err != nil {
		return nil, err
	}
	h.wg.Add(1)
	Start(context.Background(), gwSide, st, func(PipeResult) { h.wg.Done() })
	if _, err := cli.Write([]byte{cmd}); err != nil {
		return nil, err
	}
	return cli, nil
}

// mustDial is dial on the test's goroutine.
func (h *stallHarness) mustDial(cmd byte) *net.TCPConn {
	h.t.Helper()
	c, err := h.dial(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// TestStalledReadersDoNotHoldUpTheTunnel: clients that stop reading and
// targets that stop reading fill their own streams' windows, and no more:
// on the same tunnel a download and an upload still move every byte; the
// stalled connections stay open; when their clients or targets reset, the
// streams are freed while the tunnel is busy, and the tunnel carries new
// connections.
func TestStalledReadersDoNotHoldUpTheTunnel(t *testing.T) {
	for _, transport := range []string{"tcp", "wss"} {
		t.Run(transport, func(t *testing.T) {
			testStalledReaders(t, transport)
		})
	}
}

func testStalledReaders(t *testing.T, transport string) {
	const stalled = 32
	h := newStallHarness(t, transport, 16<<20)
	start := func(cmd byte) ([]*net.TCPConn, []*net.TCPConn) {
		var clients, targets []*net.TCPConn
		for range stalled {
			clients = append(clients, h.mustDial(cmd))
			targets = append(targets, <-h.accepted)
		}
		return clients, targets
	}
	// Stalled downloads: the target writes, the client never reads.
	downClients, downTargets := start('W')
	// Stalled uploads: the client writes, the target never reads.
	upClients, upTargets := start('S')
	flood := testutil.NewFlood(t)
	for _, c := range upClients {
		flood.Start(c)
	}
	// Wait until the stalled uploads have filled more than their windows.
	waitFor(t, func() bool { return flood.Sent.Load() >= int64(stalled*(DefaultSettings().StreamWindow+64<<10)) })

	// A fast download and a fast upload beside them.
	var fast sync.WaitGroup
	fastErr := make(chan error, 2)
	fast.Add(2)
	go func() {
		defer fast.Done()
		c, err := h.dial('D')
		if err != nil {
			fastErr <- err
			return
		}
		defer c.Close()
		<-h.accepted
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, pattern(h.total)) {
			fastErr <- errors.New("fast download: bytes lost or corrupted")
		}
	}()
	go func() {
		defer fast.Done()
		c, err := h.dial('U')
		if err != nil {
			fastErr <- err
			return
		}
		defer c.Close()
		<-h.accepted
		c.Write(pattern(h.total))
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "ok" {
			fastErr <- errors.New("fast upload: the target did not receive every byte intact")
		}
	}()
	done := make(chan struct{})
	go func() { fast.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		h.gw.Close() // unblocks the transfers so the test ends
		<-done
		t.Fatal("the fast transfers stalled behind connections whose readers stopped")
	}
	close(fastErr)
	for err := range fastErr {
		t.Fatal(err)
	}

	// The stalled connections are still open: downloads have data
	// waiting, and no upload's write has failed.
	for i, c := range downClients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("stalled download %d: %v, want it open with data waiting", i, err)
		}
	}
	select {
	case err := <-flood.Failed:
		t.Fatalf("a stalled upload was cut: %v", err)
	default:
	}
	waitStreams := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for h.gw.NumStreams() != want || h.ag.NumStreams() != want {
			if time.Now().After(deadline) {
				t.Fatalf("streams gateway %d agent %d, want %d: resets were not delivered (sessions: %v, %v)", h.gw.NumStreams(), h.ag.NumStreams(), want, h.gw.Err(), h.ag.Err())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitStreams(2 * stalled) // the fast ones end; every stalled one stays

	// Half of each set is reset by its client, half by its target, while
	// the other half stays stalled. Their streams are freed.
	const q = stalled / 4
	for i := range q {
		Reset(downClients[i])
		Reset(downTargets[q+i])
		Reset(upClients[i])
		Reset(upTargets[q+i])
	}
	waitStreams(stalled)
	for i := 2 * q; i < stalled; i++ {
		Reset(downClients[i])
		Reset(upClients[i])
	}
	waitStreams(0)

	// The same tunnel carries a new connection.
	c := h.mustDial('D')
	<-h.accepted
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, pattern(h.total)) {
		t.Fatalf("a new connection after the resets: %d bytes, %v", len(got), err)
	}
	select {
	case <-h.gw.Done():
		t.Fatalf("the tunnel was torn down: %v", h.gw.Err())
	default:
	}
}
