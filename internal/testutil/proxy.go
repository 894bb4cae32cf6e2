package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// ConnectRequest is one CONNECT request a ConnectProxy received.
type ConnectRequest struct {
	Target string // host:port asked for
	Auth   string // the Proxy-Authorization header
}

// ConnectProxy is a minimal HTTP CONNECT proxy on 127.0.0.1:0.
type ConnectProxy struct {
	Addr string
	// Requests receives the first 16 requests; later ones are not recorded.
	Requests chan ConnectRequest
}

// NewConnectProxy starts a CONNECT proxy, stopped at cleanup. With refuse
// set ("407 Proxy Authentication Required", say) it answers every request
// with that status line; otherwise it dials the target and relays.
func NewConnectProxy(t testing.TB, refuse string) *ConnectProxy {
	t.Helper()
	return serveConnectProxy(t, listen(t), refuse)
}

// NewTLSConnectProxy is a relaying CONNECT proxy that clients reach over
// TLS (an https:// proxy), with a fresh certificate for hosts; caFile is
// that certificate, for clients to trust.
func NewTLSConnectProxy(t testing.TB, hosts ...string) (p *ConnectProxy, caFile string) {
	t.Helper()
	ln, caFile := ListenTLS(t, time.Now().Add(time.Hour), hosts...)
	return serveConnectProxy(t, ln, ""), caFile
}

func serveConnectProxy(t testing.TB, ln net.Listener, refuse string) *ConnectProxy {
	p := &ConnectProxy{Addr: ln.Addr().String(), Requests: make(chan ConnectRequest, 16)}
	var wg sync.WaitGroup
	acceptEach(ln, &wg, func(c net.Conn) {
		defer c.Close()
		p.serve(c, refuse)
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return p
}

func (p *ConnectProxy) serve(c net.Conn, refuse string) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	select {
	case p.Requests <- ConnectRequest{req.Host, req.Header.Get("Proxy-Authorization")}:
	default:
	}
	if refuse != "" {
		fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n", refuse)
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\n\r\n"))
		return
	}
	defer up.Close()
	c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	done := make(chan struct{})
	go func() { io.Copy(up, br); up.Close(); close(done) }()
	io.Copy(c, up)
	c.Close()
	<-done
}
