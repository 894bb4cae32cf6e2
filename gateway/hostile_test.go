package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/gateway/admin"
	"github.com/ferry-tunnel/ferry/store"
	"github.com/ferry-tunnel/ferry/tunnel"
)

// testConfig is a gateway config on loopback ports, with its own data
// directory and a self-signed certificate.
func testConfig(t *testing.T) config.Gateway {
	cfg := config.DefaultGateway()
	cfg.DataDir = t.TempDir()
	cfg.NodeID = "test"
	cfg.Listen.Tunnel = "127.0.0.1:0"
	cfg.Listen.Admin = "127.0.0.1:0"
	cfg.TLS.SelfSigned = true
	return cfg
}

// newTestGateway builds a gateway from cfg that logs nothing.
func newTestGateway(t *testing.T, cfg *config.Gateway) *Gateway {
	t.Helper()
	g, err := New(context.Background(), cfg, Options{
		Logger: slog.New(slog.DiscardHandler),
		Getenv: func(string) string { return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// startGateway runs a real gateway in-process on loopback ports.
func startGateway(t *testing.T, mod func(*config.Gateway)) *Gateway {
	t.Helper()
	cfg := testConfig(t)
	cfg.Limits.HandshakeTimeout = time.Second
	cfg.Limits.FailedAuthPerMinute = 3
	if mod != nil {
		mod(&cfg)
	}
	g := newTestGateway(t, &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	})
	return g
}

func tlsDial(t *testing.T, g *Gateway) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", g.TunnelAddr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// request sends raw HTTP on a fresh TLS connection and returns the status.
func request(t *testing.T, g *Gateway, raw string) int {
	t.Helper()
	c := tlsDial(t, g)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

func TestHostileHandshakes(t *testing.T) {
	g := startGateway(t, nil)
	good, err := admin.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.store.CreateAgent(context.Background(), store.Agent{Name: "acme", TokenHash: admin.HashToken(good), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	t.Run("garbage instead of TLS", func(t *testing.T) {
		c, err := net.Dial("tcp", g.TunnelAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("\x00\xff garbage that is not a TLS client hello \r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil && strings.Contains(err.Error(), "timeout") {
			t.Fatal("gateway kept a garbage connection open")
		}
	})
	t.Run("oversized headers", func(t *testing.T) {
		big := strings.Repeat("x", 64<<10)
		if code := request(t, g, "GET /v1/tunnel HTTP/1.1\r\nHost: localhost\r\nX-Big: "+big+"\r\n\r\n"); code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", code)
		}
	})
	t.Run("slow headers are cut off", func(t *testing.T) {
		c := tlsDial(t, g)
		io.WriteString(c, "GET /v1/tunnel HTTP/1.1\r\nHost: local")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		io.ReadAll(c)
		if time.Since(start) > 9*time.Second {
			t.Fatal("a never-finished request was kept open")
		}
	})
	t.Run("websocket upgrade with a valid token but no websocket", func(t *testing.T) {
		code := request(t, g, "GET /v1/tunnel HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "+good+"\r\n\r\n")
		if code < 400 || code >= 500 {
			t.Fatalf("status %d, want a 4xx", code)
		}
	})
	t.Run("admin token is not an agent token", func(t *testing.T) {
		code := request(t, g, "GET /v1/tunnel HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "+g.adminToken+"\r\n"+upgrade+"\r\n")
		if code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", code)
		}
	})
	t.Run("brute force is rate limited", func(t *testing.T) {
		var codes []int
		for i := range 6 {
			codes = append(codes, request(t, g, fmt.Sprintf("GET /v1/tunnel HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer fat_guess%d\r\n%s\r\n", i, upgrade)))
		}
		if codes[len(codes)-1] != http.StatusTooManyRequests {
			t.Fatalf("statuses %v, want 429 at the end", codes)
		}
	})
	t.Run("still serves", func(t *testing.T) {
		resp, err := http.Get("http://" + g.AdminAddr().String() + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz after abuse: %v %v", resp, err)
		}
		resp.Body.Close()
		if n := g.reg.all(); len(n) != 0 {
			t.Fatalf("sessions registered after failed handshakes: %d", len(n))
		}
	})
}

// TestTokenRecheck: a session that authenticated with a token rotated since
// (through this node, another node, or racing its handshake) fails the
// recheck that closes it.
func TestTokenRecheck(t *testing.T) {
	g := startGateway(t, nil)
	old, _ := admin.GenerateToken()
	ctx := context.Background()
	if err := g.store.CreateAgent(ctx, store.Agent{Name: "acme", TokenHash: admin.HashToken(old), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	id, err := g.authenticate(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	p := tunnel.Peer{Identity: id}
	if ok, err := g.tokenCurrent(ctx, p); !ok || err != nil {
		t.Fatalf("fresh token not current: %v %v", ok, err)
	}
	newTok, _ := admin.GenerateToken()
	if err := g.store.SetAgentToken(ctx, "acme", admin.HashToken(newTok)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := g.tokenCurrent(ctx, p); ok {
		t.Fatal("rotated token still current")
	}
	if _, err := g.authenticate(ctx, old); err != tunnel.ErrUnauthorized {
		t.Fatalf("old token: %v, want ErrUnauthorized", err)
	}
}
