package mux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transports are the byte streams sessions are tested over.
var transports = map[string]func(t testing.TB) (gw, ag net.Conn){
	"pipe": func(t testing.TB) (net.Conn, net.Conn) { return net.Pipe() },
	"tcp":  tcpPair,
	"wss":  wssPair,
}

func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	a, d := testutil.TCPPair(t)
	return a, d
}

// wssPair is a WebSocket over real TLS, as the tunnel uses.
func wssPair(t testing.TB) (net.Conn, net.Conn) {
	ch := make(chan net.Conn, 1)
	done := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ch <- websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		<-done
	}))
	t.Cleanup(func() {
		close(done)
		srv.Close()
	})
	c, _, err := websocket.Dial(context.Background(), "wss"+srv.URL[5:], &websocket.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return <-ch, websocket.NetConn(context.Background(), c, websocket.MessageBinary)
}

func testSettings() Settings {
	s := DefaultSettings()
	s.KeepaliveInterval = 200 * time.Millisecond
	s.KeepaliveTimeout = 2 * time.Second
	s.HandshakeTimeout = 2 * time.Second
	return s
}

// sessionPair starts both ends of a session over the named transport.
func sessionPair(t testing.TB, transport string) (gw, ag *Session) {
	t.Helper()
	gc, ac := transports[transport](t)
	ctx := context.Background()
	type res struct {
		s   *Session
		m   Message
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, m, err := Agent(ctx, ac, testSettings(), Message{Version: "test", Instance: "i1"}, nil)
		ch <- res{s, m, err}
	}()
	gw, info, err := Gateway(ctx, gc, testSettings(), Message{SessionID: "s-1", Node: "gw1"}, nil)
	if err != nil {
		t.Fatalf("gateway session: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("agent session: %v", r.err)
	}
	if info.Instance != "i1" || r.m.Node != "gw1" || r.m.SessionID != "s-1" {
		t.Fatalf("handshake: info %+v hello %+v", info, r.m)
	}
	t.Cleanup(func() {
		gw.Close()
		r.s.Close()
	})
	return gw, r.s
}

// serveAgent answers every stream on ag with handle after an ok reply.
func serveAgent(t testing.TB, ag *Session, handle func(st *Stream)) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := ag.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := st.ReadRequest(); err != nil {
					st.Close()
					return
				}
				st.Reply(Reply{Code: CodeOK})
				handle(st)
			}()
		}
	}()
	t.Cleanup(func() {
		ag.Close()
		wg.Wait()
	})
	return &wg
}

func forEachTransport(t *testing.T, f func(t *testing.T, transport string)) {
	for name := range transports {
		t.Run(name, func(t *testing.T) {
			f(t, name)
		})
	}
}

// TestHalfCloseEcho: the gateway sends data and half-closes; the agent
// echoes it after reading EOF; the gateway reads every byte back.
func TestHalfCloseEcho(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		gw, ag := sessionPair(t, transport)
		serveAgent(t, ag, func(st *Stream) {
			data, err := io.ReadAll(st)
			if err != nil {
				st.Abort()
				return
			}
			st.Write(data)
			st.CloseWrite()
			io.Copy(io.Discard, st)
			st.Close()
		})
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := gw.Open(context.Background(), OpenRequest{Target: "echo:1"}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				payload := make([]byte, 1<<20)
				rand.Read(payload)
				go func() {
					st.Write(payload)
					st.CloseWrite()
				}()
				got, err := io.ReadAll(st)
				st.Close()
				if err != nil || sha256.Sum256(got) != sha256.Sum256(payload) {
					t.Errorf("echo: %d bytes, err %v", len(got), err)
				}
			}()
		}
		wg.Wait()
	})
}

func TestOpenRefused(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		gw, ag := sessionPair(t, transport)
		go func() {
			for {
				st, err := ag.Accept(context.Background())
				if err != nil {
					return
				}
				st.ReadRequest()
				st.Reply(Reply{Code: CodeDenied, Message: "no rule admits x:1"})
				st.Close()
			}
		}()
		_, err := gw.Open(context.Background(), OpenRequest{Target: "x:1"}, nil)
		var oe *OpenError
		if !errors.As(err, &oe) || oe.Reply.Code != CodeDenied || oe.Reply.Message != "no rule admits x:1" {
			t.Fatalf("got %v, want denied OpenError", err)
		}
		if n := gw.NumStreams(); n != 0 {
			t.Fatalf("refused stream still registered: %d", n)
		}
	})
}

func TestOpenTimesOutWithoutReply(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	serveAgentNoReply := func() {
		for {
			st, err := ag.Accept(context.Background())
			if err != nil {
				return
			}
			defer st.Close()
		}
	}
	go serveAgentNoReply()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := gw.Open(ctx, OpenRequest{Target: "slow:1"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
}

// gatewaySessionEnds runs the gateway's end of a session over a TCP pair
// whose agent end peer drives, and fails with failMsg unless the session
// ends within timeout. The session is closed at cleanup.
func gatewaySessionEnds(t *testing.T, timeout time.Duration, failMsg string, peer func(ac net.Conn)) *Session {
	t.Helper()
	gc, ac := tcpPair(t)
	go peer(ac)
	gw, _, err := Gateway(context.Background(), gc, testSettings(), Message{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	select {
	case <-gw.Done():
	case <-time.After(timeout):
		t.Fatal(failMsg)
	}
	return gw
}

// TestAgentOpenedStreamClosesSession: only the gateway may open streams.
func TestAgentOpenedStreamClosesSession(t *testing.T) {
	gw := gatewaySessionEnds(t, 5*time.Second, "session not closed after the agent opened a stream", func(ac net.Conn) {
		// A rogue agent: answers the handshake, then opens a stream itself.
		sm, _, _ := Agent(context.Background(), ac, testSettings(), Message{}, nil)
		if sm != nil {
			sm.sm.OpenStream()
			<-sm.Done()
			sm.Close()
		}
	})
	if !errors.Is(gw.Err(), ErrProtocol) {
		t.Fatalf("err %v, want ErrProtocol", gw.Err())
	}
}

// TestKeepaliveTimeout: a peer that goes silent is noticed.
func TestKeepaliveTimeout(t *testing.T) {
	gatewaySessionEnds(t, 10*time.Second, "dead peer not noticed", func(ac net.Conn) {
		// Completes the handshake by hand, then never answers again.
		s, _, err := Agent(context.Background(), ac, testSettings(), Message{}, nil)
		if err == nil {
			s.sm.SetDeadline(time.Time{})
			s.conn.Conn.(*net.TCPConn).CloseRead()
			<-s.Done()
			s.Close()
		}
	})
}

// pipeHarness runs a pipe on both sides: client ⇄ [gateway pipe] ⇄ tunnel ⇄
// [agent pipe] ⇄ target, with real TCP at both ends.
type pipeHarness struct {
	client, target *net.TCPConn
	gwRes, agRes   chan PipeResult
	gw, ag         *Session
}

// pipeWait is Start waiting for its result.
func pipeWait(ctx context.Context, conn HalfCloser, st *Stream) PipeResult {
	ch := make(chan PipeResult, 1)
	Start(ctx, conn, st, func(r PipeResult) { ch <- r })
	return <-ch
}

func newPipeHarness(t testing.TB, transport string) *pipeHarness {
	gw, ag := sessionPair(t, transport)
	h := &pipeHarness{gw: gw, ag: ag, gwRes: make(chan PipeResult, 1), agRes: make(chan PipeResult, 1)}
	cliA, cliB := tcpPair(t)
	tgtA, tgtB := tcpPair(t)
	h.client, h.target = cliB.(*net.TCPConn), tgtA.(*net.TCPConn)
	t.Cleanup(func() { h.client.Close(); h.target.Close() })
	go func() {
		st, err := ag.Accept(context.Background())
		if err != nil {
			return
		}
		st.ReadRequest()
		st.Reply(Reply{Code: CodeOK})
		h.agRes <- pipeWait(context.Background(), tgtB.(*net.TCPConn), st)
	}()
	st, err := gw.Open(context.Background(), OpenRequest{Target: "t:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { h.gwRes <- pipeWait(context.Background(), cliA.(*net.TCPConn), st) }()
	return h
}

func TestPipeHalfClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		h := newPipeHarness(t, transport)
		h.client.Write([]byte("request"))
		h.client.CloseWrite()
		got, err := io.ReadAll(h.target)
		if err != nil || string(got) != "request" {
			t.Fatalf("target read %q, %v; want the request then EOF", got, err)
		}
		h.target.Write([]byte("answer after the client's FIN"))
		h.target.CloseWrite()
		got, err = io.ReadAll(h.client)
		if err != nil || string(got) != "answer after the client's FIN" {
			t.Fatalf("client read %q, %v", got, err)
		}
		if r := <-h.gwRes; r.Aborted || r.ToStream != 7 || r.FromStream != 29 {
			t.Fatalf("gateway pipe result %+v", r)
		}
		if r := <-h.agRes; r.Aborted {
			t.Fatalf("agent pipe result %+v", r)
		}
	})
}

// TestPipeTargetResetReachesClient: a reset on the target's side is a reset
// on the client's side, never a clean end of data.
func TestPipeTargetResetReachesClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		h := newPipeHarness(t, transport)
		h.target.Write([]byte("partial"))
		buf := make([]byte, 7)
		if _, err := io.ReadFull(h.client, buf); err != nil {
			t.Fatal(err)
		}
		Reset(h.target)
		_, err := io.ReadAll(h.client)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client got %v, want connection reset", err)
		}
		if r := <-h.agRes; !r.Aborted {
			t.Fatalf("agent pipe not aborted: %+v", r)
		}
		if r := <-h.gwRes; !r.Aborted || !errors.Is(r.Err, ErrPeerReset) {
			t.Fatalf("gateway pipe: %+v, want aborted by peer reset", r)
		}
	})
}

func TestPipeClientResetReachesTarget(t *testing.T) {
	h := newPipeHarness(t, "tcp")
	h.client.Write([]byte("x"))
	buf := make([]byte, 1)
	io.ReadFull(h.target, buf)
	Reset(h.client)
	if _, err := io.ReadAll(h.target); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("target got %v, want connection reset", err)
	}
	<-h.gwRes
	<-h.agRes
}

// TestTunnelDeathResetsBothEnds: when the tunnel dies mid-transfer the client
// and the target see a reset, not a clean FIN.
func TestTunnelDeathResetsBothEnds(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport string) {
		h := newPipeHarness(t, transport)
		h.target.Write(bytes.Repeat([]byte("x"), 1000))
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(h.client, buf); err != nil {
			t.Fatal(err)
		}
		h.gw.conn.Close() // the tunnel's connection dies under the session
		if _, err := io.ReadAll(h.client); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client got %v, want connection reset", err)
		}
		if _, err := io.ReadAll(h.target); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("target got %v, want connection reset", err)
		}
		if r := <-h.gwRes; !r.Aborted {
			t.Fatalf("gateway pipe: %+v", r)
		}
		<-h.agRes
	})
}

func TestRTTMeasured(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	deadline := time.Now().Add(5 * time.Second)
	for (gw.RTT() == 0 || ag.RTT() == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if gw.RTT() <= 0 || ag.RTT() <= 0 {
		t.Fatalf("rtt not measured: gateway %v agent %v", gw.RTT(), ag.RTT())
	}
}

func TestDrainAndGoaway(t *testing.T) {
	gc, ac := tcpPair(t)
	got := make(chan Message, 1)
	ch := make(chan *Session, 1)
	go func() {
		s, _, _ := Agent(context.Background(), ac, testSettings(), Message{}, func(m Message) { got <- m })
		ch <- s
	}()
	gw, _, err := Gateway(context.Background(), gc, testSettings(), Message{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ag := <-ch
	defer gw.Close()
	defer ag.Close()
	gw.Send(Message{Type: TypeGoaway, Reason: "bye"})
	if m := <-got; m.Type != TypeGoaway || m.Reason != "bye" {
		t.Fatalf("agent got %+v", m)
	}
	ag.Send(Message{Type: TypeDrain})
	deadline := time.Now().Add(5 * time.Second)
	for !gw.PeerDraining() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !gw.PeerDraining() {
		t.Fatal("gateway did not see drain")
	}
}

// An idle proxied connection costs two goroutines on each side (one per
// direction) and nothing of its opener's: Start returns at once, and the
// goroutines end with the connection.
func TestStartIdleGoroutines(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	const n = 20
	var ended sync.WaitGroup
	ended.Add(2 * n)
	go func() { // ends after n accepts
		for range n {
			st, err := ag.Accept(context.Background())
			if err != nil {
				return
			}
			st.ReadRequest()
			st.Reply(Reply{Code: CodeOK})
			a, b := tcpPair(t)
			go func() { // the target echoes, and closes after the client's end
				io.Copy(b, b)
				b.Close()
			}()
			Start(context.Background(), a.(*net.TCPConn), st, func(PipeResult) { ended.Done() })
		}
	}()
	clients := make([]net.Conn, n)
	for i := range clients {
		st, err := gw.Open(context.Background(), OpenRequest{Target: "t:1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, b := tcpPair(t)
		Start(context.Background(), a.(*net.TCPConn), st, func(PipeResult) { ended.Done() })
		clients[i] = b
		b.Write([]byte{byte(i)})
		one := make([]byte, 1)
		if _, err := io.ReadFull(b, one); err != nil || one[0] != byte(i) {
			t.Fatalf("echo %d: got %v, %v", i, one, err)
		}
	}
	// Per connection: one goroutine per direction on each side, and none
	// left behind by the openers (Start returned).
	want := map[string]int{"mux.(*pipe).up(": 2 * n, "mux.(*pipe).down(": 2 * n}
	var got map[string]int
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = goroutinesIn("mux.(*pipe).up(", "mux.(*pipe).down(")
		if maps.Equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("goroutines for %d idle connections: %v, want %v", n, got, want)
	}
	for _, c := range clients {
		c.Close()
	}
	ended.Wait()
	waitFor(t, func() bool { return len(goroutinesIn("mux.(*pipe).")) == 0 })
}

// goroutinesIn counts the goroutines whose stack has a frame starting
// with each of funcs.
func goroutinesIn(funcs ...string) map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range funcs {
			if strings.Contains(g, "\n"+"github.com/ferry-tunnel/ferry/"+f) {
				counts[f]++
			}
		}
	}
	return counts
}

// recordingConn keeps a copy of every write that reaches the connection.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestOpenIsOneMessage: smux's SYN, Ferry's open request and the client's
// first bytes reach the tunnel connection in one write (one WebSocket
// message and TLS record), and the first bytes reach the agent's side of
// the stream intact, after the request.
func TestOpenIsOneMessage(t *testing.T) {
	gc, ac := tcpPair(t)
	rec := &recordingConn{Conn: gc}
	ch := make(chan *Session, 1)
	go func() {
		s, _, err := Agent(context.Background(), ac, testSettings(), Message{Version: "test"}, nil)
		if err != nil {
			t.Error(err)
		}
		ch <- s
	}()
	gw, _, err := Gateway(context.Background(), rec, testSettings(), Message{SessionID: "s-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ag := <-ch
	if ag == nil {
		t.FailNow()
	}
	t.Cleanup(func() { gw.Close() })
	const first = "\x00\x00\x00\x08\x04\xd2\x16\x2f" // a PostgreSQL SSLRequest
	got := make(chan string, 1)
	serveAgent(t, ag, func(st *Stream) {
		b := make([]byte, len(first))
		st.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := io.ReadFull(st, b)
		got <- string(b[:n])
		st.Close()
	})

	const target = "db.internal:5432"
	st, err := gw.Open(context.Background(), OpenRequest{Target: target, ConnID: "c-1"}, []byte(first))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if g := <-got; g != first {
		t.Fatalf("agent read %q after the request, want %q", g, first)
	}
	syn := []byte{2, 0, 0, 0} // smux v2 SYN: version, command, no payload
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, w := range rec.writes {
		if i := bytes.Index(w, []byte(target)); i >= 0 {
			if s := bytes.Index(w, syn); s < 0 || s > i {
				t.Fatalf("the open request left without its SYN: % x", w)
			}
			if f := bytes.Index(w, []byte(first)); f < i {
				t.Fatalf("the first bytes did not follow the open request in its message: % x", w)
			}
			return
		}
	}
	t.Fatal("no write held the open request")
}

// TestOpenLateReplyAborts: when the reply comes too late, an open that
// sent first bytes aborts its stream: the agent, which may have passed them
// to the target, sees a reset (and resets the target), not a clean end.
func TestOpenLateReplyAborts(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	reset := make(chan bool, 1)
	go func() {
		st, err := ag.Accept(context.Background())
		if err != nil {
			reset <- false
			return
		}
		defer st.Close()
		st.ReadRequest()
		time.Sleep(300 * time.Millisecond) // a slow dial, past the opener's deadline
		st.Reply(Reply{Code: CodeOK})
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, st) // the first bytes, then the end
		select {
		case <-st.peerReset:
			reset <- true
		default:
			reset <- false
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := gw.Open(ctx, OpenRequest{Target: "db:5432"}, []byte("UPDATE accounts SET ..."))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open = %v, want the deadline", err)
	}
	if !<-reset {
		t.Fatal("the agent's stream ended cleanly; want a reset")
	}
}

// TestResetBeforeAccept: a reset that overtakes the stream's Accept (the
// gateway gave up on an open the agent had not accepted yet) is not lost:
// the agent's ReadRequest reports it, so nothing is dialled and the first
// bytes go nowhere.
func TestResetBeforeAccept(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := gw.Open(ctx, OpenRequest{Target: "db:5432"}, []byte("UPDATE accounts SET ..."))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open = %v, want the deadline", err)
	}
	// Open returned after the agent acknowledged the reset: only now is the
	// stream accepted.
	st, err := ag.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ReadRequest(); !errors.Is(err, ErrPeerReset) {
		t.Fatalf("ReadRequest on a stream reset before its accept = %v, want ErrPeerReset", err)
	}
}

// TestEarlyResetsBounded: an agent keeps at most maxEarly resets of streams
// it has not accepted, however many a peer sends for streams it never
// opened; a gateway, which accepts no streams, keeps none.
func TestEarlyResetsBounded(t *testing.T) {
	gw, ag := sessionPair(t, "pipe")
	for id := uint32(1001); id < 1001+4*maxEarly; id += 2 {
		ag.lookupOrRemember(id)
		gw.lookupOrRemember(id)
	}
	ag.mu.Lock()
	n := len(ag.early)
	ag.mu.Unlock()
	if n != maxEarly || gw.early != nil {
		t.Fatalf("agent keeps %d early resets (want %d), gateway %d (want none)", n, maxEarly, len(gw.early))
	}
}

// TestResetBeforeAcceptConcurrent: of opens made at once, the agent takes
// half at once and the rest only after the gateway gave up on them; every
// one of those late streams must report the reset, whatever order the
// opens raced in.
func TestResetBeforeAcceptConcurrent(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	const n = 200
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if st, err := gw.Open(ctx, OpenRequest{Target: "db:5432"}, []byte("INSERT INTO ledger ...")); err == nil {
				st.Close()
			}
		}()
	}
	accept := func() *Stream {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := ag.Accept(ctx)
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		return st
	}
	for range n / 2 {
		st := accept()
		st.ReadRequest()
		st.Reply(Reply{Code: CodeOK})
		st.Close()
	}
	wg.Wait() // every other open has given up, and its reset was acknowledged
	dialled := 0
	for range n / 2 {
		st := accept()
		if _, err := st.ReadRequest(); !errors.Is(err, ErrPeerReset) {
			dialled++
		}
		st.Close()
	}
	if dialled > 0 {
		t.Fatalf("%d of %d streams taken after their open gave up read no reset: their first bytes would reach the target", dialled, n/2)
	}
}

// acceptOne accepts the next stream on ag and reads its open request.
func acceptOne(t *testing.T, ag *Session) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ag.Accept(ctx)
	if err != nil {
		t.Error(err)
		return nil
	}
	if _, err := st.ReadRequest(); err != nil {
		t.Error(err)
		st.Close()
		return nil
	}
	return st
}

// readWithin reads n bytes from st, giving up after a while.
func readWithin(st *Stream, n int) (string, error) {
	b := make([]byte, n)
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer st.SetReadDeadline(time.Time{})
	k, err := io.ReadFull(st, b)
	return string(b[:k]), err
}

// TestOpenConnSendsLateFirstBytes: a client that sends its first bytes
// only after the open request went out has them on the stream before the
// agent replies (the agent here replies only once it has read them), and
// OpenConn reports them as sent; afterwards the client's connection reads
// as before, its read deadline cleared.
func TestOpenConnSendsLateFirstBytes(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	client, accepted := tcpPair(t)
	const hello = "\x00\x00\x00\x08\x04\xd2\x16\x2f" // a PostgreSQL SSLRequest
	done := make(chan string, 1)
	go func() {
		st := acceptOne(t, ag)
		if st == nil {
			done <- ""
			return
		}
		defer st.Close()
		client.Write([]byte(hello)) // after the request, before the reply
		got, err := readWithin(st, len(hello))
		if err != nil {
			st.Reply(Reply{Code: CodeDialFailed, Message: "first bytes did not come before the reply"})
			done <- got
			return
		}
		st.Reply(Reply{Code: CodeOK})
		done <- got
		io.Copy(st, st)
	}()
	st, sent, err := gw.OpenConn(context.Background(), OpenRequest{Target: "db:5432"}, accepted, nil)
	if got := <-done; got != hello {
		t.Fatalf("the agent read %q before its reply, want %q", got, hello)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if string(sent) != hello {
		t.Fatalf("OpenConn sent %q, want %q", sent, hello)
	}
	client.Write([]byte("later"))
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 5)
		n, _ := io.ReadFull(accepted, b) // no deadline: one left behind would fail this read
		got <- string(b[:n])
	}()
	select {
	case g := <-got:
		if g != "later" {
			t.Fatalf("client read after the open = %q, want %q", g, "later")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's connection does not read after the open")
	}
}

// TestOpenConnServerSpeaksFirst: a client that sends nothing (the server
// speaks first) does not hold up the open, and OpenConn reports nothing
// sent.
func TestOpenConnServerSpeaksFirst(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	_, accepted := tcpPair(t)
	go func() {
		if st := acceptOne(t, ag); st != nil {
			st.Reply(Reply{Code: CodeOK})
			st.Write([]byte("220 smtp ready\r\n"))
			st.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a read left waiting fails the open, not the run
	defer cancel()
	st, sent, err := gw.OpenConn(ctx, OpenRequest{Target: "mail:25"}, accepted, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if len(sent) != 0 {
		t.Fatalf("OpenConn sent %q for a silent client", sent)
	}
	if got, err := readWithin(st, 16); got != "220 smtp ready\r\n" {
		t.Fatalf("greeting = %q, %v", got, err)
	}
}

// TestOpenConnClientReset: a client that resets its connection while the
// open waits fails the open with ErrClientGone, and the agent's stream is
// aborted (the target it dialled is reset), not ended cleanly.
func TestOpenConnClientReset(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	client, accepted := tcpPair(t)
	reset := make(chan bool, 1)
	go func() {
		st := acceptOne(t, ag)
		if st == nil {
			reset <- false
			return
		}
		defer st.Close()
		Reset(client.(*net.TCPConn))
		time.Sleep(100 * time.Millisecond) // the dial: the reset reaches the gateway meanwhile
		st.Reply(Reply{Code: CodeOK})
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, st)
		select {
		case <-st.peerReset:
			reset <- true
		default:
			reset <- false
		}
	}()
	_, _, err := gw.OpenConn(context.Background(), OpenRequest{Target: "db:5432"}, accepted, nil)
	if !errors.Is(err, ErrClientGone) {
		t.Fatalf("open = %v, want ErrClientGone", err)
	}
	if !<-reset {
		t.Fatal("the agent's stream ended cleanly; want a reset")
	}
}

// slowFirstConn is a client whose first bytes arrive only well after the
// open has begun to stop reading it.
type slowFirstConn struct {
	net.Conn
	once sync.Once
	wake chan struct{}
}

func (c *slowFirstConn) Read(b []byte) (int, error) {
	<-c.wake
	time.Sleep(300 * time.Millisecond)
	return copy(b, "hello"), nil
}

func (c *slowFirstConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		c.once.Do(func() { close(c.wake) })
	}
	return nil
}

// TestOpenConnLateWriteFailureFailsOpen: client bytes read while an open
// waits whose write to the stream fails (here it comes after the
// handshake deadline, the reply just before it) fail the open: an open
// that succeeded would have silently dropped the start of the connection.
func TestOpenConnLateWriteFailureFailsOpen(t *testing.T) {
	gw, ag := sessionPair(t, "tcp")
	_, accepted := tcpPair(t)
	client := &slowFirstConn{Conn: accepted, wake: make(chan struct{})}
	got := make(chan string, 1)
	go func() {
		st := acceptOne(t, ag)
		if st == nil {
			got <- ""
			return
		}
		defer st.Close()
		time.Sleep(gw.set.HandshakeTimeout - 100*time.Millisecond)
		st.Reply(Reply{Code: CodeOK})
		s, _ := readWithin(st, 5)
		got <- s
	}()
	st, sent, err := gw.OpenConn(context.Background(), OpenRequest{Target: "db:5432"}, client, nil)
	if st != nil {
		st.Close()
	}
	if g := <-got; err == nil && string(sent) != g {
		t.Fatalf("the open succeeded with %q sent, but the agent read %q", sent, g)
	}
}
