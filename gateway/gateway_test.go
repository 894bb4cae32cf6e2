package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/metrics"
	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/store"
	"github.com/ferry-tunnel/ferry/tunnel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pair starts a gateway-side session whose agent side accepts every stream
// and answers ok, then holds it open.
func pair(t *testing.T, agent string) *session {
	t.Helper()
	return pairWith(t, agent, func(st *mux.Stream) { st.Reply(mux.Reply{Code: mux.CodeOK}) })
}

// pairWith is pair with answer, run on the agent side for each stream
// after its open request has been read.
func pairWith(t *testing.T, agent string, answer func(st *mux.Stream)) *session {
	t.Helper()
	gc, ac := net.Pipe()
	set := mux.DefaultSettings()
	ch := make(chan *mux.Session, 1)
	go func() {
		s, _, err := mux.Agent(context.Background(), ac, set, mux.Message{}, nil)
		if err != nil {
			ch <- nil
			return
		}
		ch <- s
		for {
			st, err := s.Accept(context.Background())
			if err != nil {
				return
			}
			st.ReadRequest()
			answer(st)
		}
	}()
	gs, _, err := mux.Gateway(context.Background(), gc, set, mux.Message{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	as := <-ch
	t.Cleanup(func() { gs.Close(); as.Close() })
	return &session{id: agent, peer: tunnel.Peer{Identity: tunnel.Identity{Agent: agent}}, sess: gs}
}

func TestPickSpreadsAndSkipsDraining(t *testing.T) {
	r := newRegistry()
	a, b := pair(t, "acme"), pair(t, "acme")
	if !r.add(a) || r.add(b) {
		t.Fatal("add: first/not-first wrong")
	}
	// Load a with two streams: new streams go to b.
	for range 2 {
		st, err := a.sess.Open(context.Background(), mux.OpenRequest{Target: "x:1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
	}
	if s, total := r.pick("acme", nil); s != b || total != 2 {
		t.Fatalf("pick chose %v (total %d), want the idle session", s.id, total)
	}
	if s, _ := r.pick("acme", map[*session]bool{b: true}); s != a {
		t.Fatal("skip ignored")
	}
	if s, _ := r.pick("other", nil); s != nil {
		t.Fatal("picked a session of another agent")
	}
	b.sess.Close()
	if s, _ := r.pick("acme", nil); s != a {
		t.Fatal("picked a closed session")
	}
	if r.remove(b) || !r.remove(a) {
		t.Fatal("remove: last wrong")
	}
}

// TestNoRetryAfterFirstSent: a tunnel that dies after the open request and
// the client's first bytes went out is not retried on the agent's next
// tunnel: the agent may have passed them on already, and a second try could
// deliver them twice.
func TestNoRetryAfterFirstSent(t *testing.T) {
	var opens atomic.Int32
	var sessions []*session
	answer := func(st *mux.Stream) {
		opens.Add(1)
		for _, s := range sessions {
			if s.sess.NumStreams() > 0 {
				s.sess.Close() // the tunnel dies before the reply
			}
		}
	}
	g := &Gateway{reg: newRegistry()}
	g.cfg.Limits.MaxStreamsPerAgent = 10
	sessions = []*session{pairWith(t, "acme", answer), pairWith(t, "acme", answer)}
	for _, s := range sessions {
		g.reg.add(s)
	}
	_, _, err := g.dialStream(context.Background(), "acme", "db:5432", "c-1", nil, []byte("POST /pay HTTP/1.1\r\n"))
	if err == nil || !errors.Is(err, mux.ErrSessionClosed) {
		t.Fatalf("dial = %v, want the tunnel's end", err)
	}
	if n := opens.Load(); n != 1 {
		t.Fatalf("the request reached %d tunnels, want 1", n)
	}
}

// TestRetrySendsFirstAgain: an open that the agent answers busy moves to
// the agent's next tunnel with the client's first bytes, and they reach
// the target intact, once.
func TestRetrySendsFirstAgain(t *testing.T) {
	g, opens := busyThenEcho(t, nil)

	first := []byte("\x16\x03\x01 a TLS ClientHello")
	st, _, err := g.dialStream(context.Background(), "acme", "db:5432", "c-1", nil, first)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.CloseWrite()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil || string(got) != string(first) {
		t.Fatalf("echo = %q, %v; want %q", got, err, first)
	}
	if n := opens.Load(); n != 2 {
		t.Fatalf("%d opens, want 2 (busy, then ok)", n)
	}
}

// TestOpenTimeoutResetsClient: a client whose agent stops answering
// during the open is reset at the open timeout, not left hanging while the
// stream's abort waits for an acknowledgement that does not come (up to
// the handshake timeout, here a minute); the open counts as a timeout.
func TestOpenTimeoutResetsClient(t *testing.T) {
	set := mux.DefaultSettings()
	set.HandshakeTimeout = time.Minute
	gc, ac := testutil.TCPPair(t)
	stalled := &stallConn{Conn: ac, stall: make(chan struct{}), quit: make(chan struct{})}
	ch := make(chan *mux.Session, 1)
	go func() {
		s, _, _ := mux.Agent(context.Background(), stalled, set, mux.Message{}, nil)
		ch <- s
	}()
	gs, _, err := mux.Gateway(context.Background(), gc, set, mux.Message{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	as := <-ch
	if as == nil {
		t.Fatal("agent session failed")
	}
	close(stalled.stall) // from here on the agent reads nothing: no reply, no acknowledgement
	t.Cleanup(func() { close(stalled.quit); gs.Close(); as.Close() })

	prom := prometheus.NewRegistry()
	life, kill := context.WithCancel(context.Background())
	t.Cleanup(kill)
	g := &Gateway{reg: newRegistry(), m: metrics.NewGateway(prom, "test"), log: slog.New(slog.DiscardHandler), life: life}
	g.cfg.Limits.MaxStreamsPerAgent = 10
	g.cfg.Limits.OpenTimeout = 200 * time.Millisecond
	g.reg.add(&session{id: "acme", peer: tunnel.Peer{Identity: tunnel.Identity{Agent: "acme"}}, sess: gs})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f")) // before the accept: the open carries it
	g.clients.Add(1)                                    // as the accept loop does; serveClient releases it
	g.active.Add(1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			g.clients.Done()
			return
		}
		g.serveClient(store.Connection{Name: "db", Agent: "acme", Target: "db:5432"}, conn.(*net.TCPConn))
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read = %v, want a reset at the open timeout", err)
	}
	gs.Close() // ends the abort's wait
	g.clients.Wait()
	if n := counter(t, prom, "ferry_gateway_streams_total", "timeout"); n != 1 {
		t.Fatalf("streams_total{result=timeout} = %v, want 1", n)
	}
}

// stallConn stops delivering what it reads once stall is closed: an agent
// process that has stopped, on a link that is still up. Its reads then
// wait for quit.
type stallConn struct {
	net.Conn
	stall, quit chan struct{}
}

func (c *stallConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	select {
	case <-c.stall:
		<-c.quit
		return 0, io.EOF
	default:
		return n, err
	}
}

// counter is the value of the series of the named counter that has a
// label equal to value.
func counter(t *testing.T, prom *prometheus.Registry, name, value string) float64 {
	t.Helper()
	mfs, err := prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestOpenResultLabels(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("x: %w", &mux.OpenError{Reply: mux.Reply{Code: mux.CodeDenied}}): "denied",
		fmt.Errorf("x: %w", ErrAgentOffline):                                        "offline",
		fmt.Errorf("x: %w", ErrAgentBusy):                                           "busy",
		context.DeadlineExceeded:                                                    "timeout",
		errors.New("other"):                                                         "error",
	} {
		if got := openResult(err); got != want {
			t.Errorf("%v: %s, want %s", err, got, want)
		}
	}
}

func TestRetryable(t *testing.T) {
	notSent := fmt.Errorf("open stream: %w (%w)", mux.ErrSessionClosed, mux.ErrNotSent)
	for _, c := range []struct {
		err              error
		plain, withFirst bool // retried without first bytes, with them
	}{
		{&mux.OpenError{Reply: mux.Reply{Code: mux.CodeBusy}}, true, true},
		{&mux.OpenError{Reply: mux.Reply{Code: mux.CodeDenied}}, false, false},
		{notSent, true, true},
		{fmt.Errorf("read open reply: %w", mux.ErrSessionClosed), true, false},
		{fmt.Errorf("read open reply: %w", io.ErrUnexpectedEOF), true, false},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), false, false},
		{context.Canceled, false, false},
	} {
		if got := retryable(c.err, false); got != c.plain {
			t.Errorf("retryable(%v) = %v, want %v", c.err, got, c.plain)
		}
		if got := retryable(c.err, true); got != c.withFirst {
			t.Errorf("retryable(%v) after first bytes = %v, want %v", c.err, got, c.withFirst)
		}
	}
}

func TestSelfSignedIsReused(t *testing.T) {
	dir := t.TempDir()
	c1, created, err := loadOrCreateSelfSigned(dir)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	c2, created, err := loadOrCreateSelfSigned(dir)
	if err != nil || created {
		t.Fatalf("reload: %v %v", created, err)
	}
	if Fingerprint(c1.Certificate[0]) != Fingerprint(c2.Certificate[0]) {
		t.Fatal("certificate changed between runs")
	}
	cert, _ := x509.ParseCertificate(c1.Certificate[0])
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if cert.NotAfter.Before(time.Now().AddDate(0, 11, 0)) {
		t.Fatal("certificate expires too soon")
	}
}

// TestRetrySendsLateFirstAgain: client bytes that arrive while an open
// waits go out at once; when the agent then answers busy they travel with
// the request on the agent's next tunnel, and reach the target intact,
// once.
func TestRetrySendsLateFirstAgain(t *testing.T) {
	client, accepted := testutil.TCPPair(t)
	const hello = "GET /orders HTTP/1.1\r\nHost: erp\r\n\r\n"
	early := make(chan string, 1)
	g, opens := busyThenEcho(t, func(st *mux.Stream) {
		client.Write([]byte(hello)) // after the request, before the reply
		b := make([]byte, len(hello))
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.ReadFull(st, b)
		early <- string(b[:n])
	})

	st, sent, err := g.dialStream(context.Background(), "acme", "erp:80", "c-1", accepted, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := <-early; got != hello {
		t.Fatalf("the first tunnel read %q before its reply, want %q", got, hello)
	}
	if string(sent) != hello {
		t.Fatalf("dialStream reports %q sent, want %q", sent, hello)
	}
	st.CloseWrite()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil || string(got) != hello {
		t.Fatalf("echo = %q, %v; want %q once", got, err, hello)
	}
	if n := opens.Load(); n != 2 {
		t.Fatalf("%d opens, want 2 (busy, then ok)", n)
	}
}

// busyThenEcho is a gateway with two tunnels of agent acme: the first open
// is answered busy (after beforeBusy, if set, has run), every later one ok,
// and its stream echoes. opens counts the opens the agent read.
func busyThenEcho(t *testing.T, beforeBusy func(st *mux.Stream)) (g *Gateway, opens *atomic.Int32) {
	opens = new(atomic.Int32)
	answer := func(st *mux.Stream) {
		if opens.Add(1) == 1 {
			if beforeBusy != nil {
				beforeBusy(st)
			}
			st.Reply(mux.Reply{Code: mux.CodeBusy, Message: "tunnel is being replaced"})
			st.Close()
			return
		}
		st.Reply(mux.Reply{Code: mux.CodeOK})
		io.Copy(st, st) // the target echoes
		st.Close()
	}
	g = &Gateway{reg: newRegistry()}
	g.cfg.Limits.MaxStreamsPerAgent = 10
	g.reg.add(pairWith(t, "acme", answer))
	g.reg.add(pairWith(t, "acme", answer))
	return g, opens
}

// TestIdle: a node with a stream open on one of its tunnels (one opened
// through Dial here), or a listener client being served, is not idle; once
// the stream has ended it is again.
func TestIdle(t *testing.T) {
	g := &Gateway{reg: newRegistry()}
	g.cfg.Limits.MaxStreamsPerAgent = 10
	g.reg.add(pairWith(t, "acme", func(st *mux.Stream) {
		st.Reply(mux.Reply{Code: mux.CodeOK})
		io.Copy(io.Discard, st)
		st.Close()
	}))
	if !g.Idle() {
		t.Fatal("a node with no stream reports itself busy")
	}
	st, _, err := g.dialStream(context.Background(), "acme", "db:5432", "c-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.Idle() {
		t.Fatal("a node with an open stream reports itself idle")
	}
	st.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !g.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("the node is still busy 5 s after its only stream ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.active.Add(1) // a listener client between accept and open
	if g.Idle() {
		t.Fatal("a node serving a client reports itself idle")
	}
}

// TestClientResetDuringBusyOpenNotRetried: a client that sent nothing and
// reset its connection while the first tunnel's open waited fails the
// open, though that tunnel answered busy: the early read took the reset,
// and the next tunnel's reads would see a clean end where the client was
// cut, and dial a target for nobody.
func TestClientResetDuringBusyOpenNotRetried(t *testing.T) {
	client, accepted := testutil.TCPPair(t)
	g, opens := busyThenEcho(t, func(st *mux.Stream) {
		mux.Reset(client)
		time.Sleep(100 * time.Millisecond) // the agent's work: the reset reaches the gateway meanwhile
	})
	st, _, err := g.dialStream(context.Background(), "acme", "erp:80", "c-1", accepted, nil)
	if st != nil {
		st.Close()
	}
	if !errors.Is(err, mux.ErrClientGone) || opens.Load() != 1 {
		t.Fatalf("dialStream = %v after %d opens; want ErrClientGone after 1", err, opens.Load())
	}
}

// TestNoRetryAfterLateFirstSent: client bytes that went out while the open
// waited are not sent again on another tunnel when the first one fails
// without a reply (as when a tunnel dies): the agent may have passed them
// on already.
func TestNoRetryAfterLateFirstSent(t *testing.T) {
	client, accepted := testutil.TCPPair(t)
	const hello = "POST /pay HTTP/1.1\r\n\r\n"
	var opens atomic.Int32
	answer := func(st *mux.Stream) {
		opens.Add(1)
		client.Write([]byte(hello))
		b := make([]byte, len(hello))
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadFull(st, b)
		st.Close() // no reply
	}
	g := &Gateway{reg: newRegistry()}
	g.cfg.Limits.MaxStreamsPerAgent = 10
	g.reg.add(pairWith(t, "acme", answer))
	g.reg.add(pairWith(t, "acme", answer))
	_, sent, err := g.dialStream(context.Background(), "acme", "erp:80", "c-1", accepted, nil)
	if err == nil || opens.Load() != 1 || string(sent) != hello {
		t.Fatalf("dialStream = %v after %d opens, %q sent; want a failure after 1 open that sent %q", err, opens.Load(), sent, hello)
	}
}
