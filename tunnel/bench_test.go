package tunnel

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/mux"
)

// BenchmarkTunnel is the full in-process tunnel as the binaries build it:
// the gateway's listener (batching under TLS) and Handler, the agent's
// Dialer (its own TLS connection, batching above and below TLS), Ferry's
// byte stream over the WebSocket, a gateway and an agent session, and
// mux.Start pipes on both ends: client TCP ⇄ gateway pipe ⇄ tunnel ⇄
// agent pipe ⇄ target TCP. Only the processes, the allow-list and the
// target's dial are missing. Allocations are those of the whole pipeline.
// Names are stable for benchstat:
//
//	go test -run '^$' -bench Tunnel -benchmem -count 6 ./tunnel/ > old.txt
func BenchmarkTunnel(b *testing.B) {
	const chunk = 32 << 10
	b.Run("upload", func(b *testing.B) {
		c, target := startBenchTunnel(b).conn(b)
		testutil.BenchCopy(b, c, target, chunk)
	})
	b.Run("download", func(b *testing.B) {
		c, target := startBenchTunnel(b).conn(b)
		testutil.BenchCopy(b, target, c, chunk)
	})
	b.Run("echo-1B", func(b *testing.B) {
		c, target := startBenchTunnel(b).conn(b)
		echoed := make(chan struct{})
		go func() { // the target echoes until the client's end
			defer close(echoed)
			io.Copy(target, target)
		}()
		testutil.BenchEcho(b, c)
		c.CloseWrite()
		<-echoed
	})
	b.Run("open", func(b *testing.B) {
		t := startBenchTunnel(b)
		req := mux.OpenRequest{Target: "db.internal:5432", ConnID: "c-0123456789ab"}
		first := []byte("\x00\x00\x00\x08\x04\xd2\x16\x2f") // a PostgreSQL SSLRequest
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			st, err := t.gw.Open(context.Background(), req, first)
			if err != nil {
				b.Fatal(err)
			}
			st.Close()
		}
	})
}

// benchTunnel is one tunnel between a gateway session and an agent
// session. The agent side answers every stream ok and pipes it to the
// target connection waiting in targets, or closes it when none waits.
type benchTunnel struct {
	gw      *mux.Session
	targets chan *net.TCPConn
	pipes   sync.WaitGroup // both ends' mux.Start pipes; the cleanup waits for them
}

func startBenchTunnel(b *testing.B) *benchTunnel {
	b.Helper()
	certFile, keyFile, err := testutil.WriteCertUntil(b.TempDir(), time.Now().Add(time.Hour), "localhost")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	life, kill := context.WithCancel(context.Background())
	set := mux.DefaultSettings()
	sessions := make(chan *mux.Session, 1)
	h := NewHandler(HandlerConfig{
		Authenticate: func(context.Context, string) (Identity, error) { return Identity{Agent: "acme"}, nil },
		Serve: func(conn net.Conn, _ Peer) {
			s, _, err := mux.Gateway(life, conn, set, mux.Message{SessionID: "s-1", Node: "gw1"}, nil)
			if err != nil {
				conn.Close()
				return
			}
			sessions <- s
			<-s.Done()
		},
		Life: life,
	})
	srv := &http.Server{Handler: h, ConnContext: ConnContext}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(tls.NewListener(Listener(raw), &tls.Config{Certificates: []tls.Certificate{cert}}))
	}()
	t := &benchTunnel{targets: make(chan *net.TCPConn, 1)}
	b.Cleanup(func() { // last: after the sessions' cleanup below
		kill()
		srv.Close()
		<-served
		t.pipes.Wait()
	})

	_, port, _ := net.SplitHostPort(raw.Addr().String())
	d, err := NewDialer(DialConfig{
		URL:    "wss://localhost:" + port + "/v1/tunnel",
		Token:  func() (string, error) { return goodToken, nil },
		CAFile: certFile,
	})
	if err != nil {
		b.Fatal(err)
	}
	conn, err := d.Dial(context.Background(), life, loopback)
	if err != nil {
		b.Fatal(err)
	}
	ag, _, err := mux.Agent(life, conn, set, mux.Message{Version: "bench"}, nil)
	if err != nil {
		conn.Close()
		b.Fatal(err)
	}
	select {
	case t.gw = <-sessions:
	case <-time.After(10 * time.Second):
		ag.Close()
		b.Fatal("no gateway session within 10s")
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			st, err := ag.Accept(life)
			if err != nil {
				return
			}
			if _, err := st.ReadRequest(); err != nil {
				st.Close()
				continue
			}
			st.Reply(mux.Reply{Code: mux.CodeOK})
			select {
			case target := <-t.targets:
				t.pipes.Add(1)
				mux.Start(life, target, st, func(mux.PipeResult) { t.pipes.Done() })
			default:
				st.Close() // an open benchmark: no data
			}
		}
	}()
	b.Cleanup(func() {
		t.gw.Close()
		ag.Close()
		<-accepted
	})
	return t
}

// conn opens one proxied connection and returns its client end and the
// target's end.
func (t *benchTunnel) conn(b *testing.B) (client, target *net.TCPConn) {
	b.Helper()
	gwEnd, c := testutil.TCPPair(b)
	agEnd, tg := testutil.TCPPair(b)
	t.targets <- agEnd
	st, err := t.gw.Open(context.Background(), mux.OpenRequest{Target: "t:1"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	t.pipes.Add(1)
	mux.Start(context.Background(), gwEnd, st, func(mux.PipeResult) { t.pipes.Done() })
	return c, tg
}
