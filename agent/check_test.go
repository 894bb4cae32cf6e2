package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/tunnel"
)

const checkToken = "fat_check-secret-token"

// checkGateway is a TLS server running the real tunnel handler and the
// gateway's end of a mux session, recording how each session ended.
type checkGateway struct {
	port   string
	caFile string

	mu       sync.Mutex
	drained  []string // drain reasons received
	closed   []error  // session end reasons
	sessions chan struct{}
}

func startCheckGateway(t *testing.T, notAfter time.Time) *checkGateway {
	t.Helper()
	ln, caFile := testutil.ListenTLS(t, notAfter, "localhost")
	g := &checkGateway{caFile: caFile, sessions: make(chan struct{}, 8)}
	_, g.port, _ = net.SplitHostPort(ln.Addr().String())
	var wg sync.WaitGroup
	h := tunnel.NewHandler(tunnel.HandlerConfig{
		Authenticate: func(_ context.Context, token string) (tunnel.Identity, error) {
			switch token {
			case checkToken:
				return tunnel.Identity{Agent: "acme"}, nil
			case "fat_disabled":
				return tunnel.Identity{Agent: "acme"}, tunnel.ErrDisabled
			}
			return tunnel.Identity{}, tunnel.ErrUnauthorized
		},
		Serve: func(conn net.Conn, p tunnel.Peer) {
			wg.Add(1)
			defer wg.Done()
			sess, _, err := mux.Gateway(context.Background(), conn, mux.DefaultSettings(), mux.Message{SessionID: "s-1", Node: "n1"}, func(m mux.Message) {
				if m.Type == mux.TypeDrain {
					g.mu.Lock()
					g.drained = append(g.drained, m.Reason)
					g.mu.Unlock()
				}
			})
			if err != nil {
				g.mu.Lock()
				g.closed = append(g.closed, fmt.Errorf("session did not start: %w", err))
				g.mu.Unlock()
				g.sessions <- struct{}{}
				return
			}
			<-sess.Done()
			sess.Close()
			g.mu.Lock()
			g.closed = append(g.closed, sess.Err())
			g.mu.Unlock()
			g.sessions <- struct{}{}
		},
	})
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return g
}

// agentConfig writes a token file and parses an agent config for g.
func agentConfig(t *testing.T, g *checkGateway, token, extra string, allow ...string) (*config.Agent, string) {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(allow))
	for i, a := range allow {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	toml := fmt.Sprintf(`[gateway]
url = "wss://localhost:%s/v1/tunnel"
token_file = %q
ca_file = %q
allowed_ips = ["127.0.0.1/32"]
handshake_timeout = "5s"
%s
[access]
allow = [%s]
dial_timeout = "2s"
`, g.port, tokFile, g.caFile, extra, strings.Join(quoted, ", "))
	path := filepath.Join(dir, "agent.toml")
	cfg, err := config.ParseAgent([]byte(toml), path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, tokFile
}

func runCheck(t *testing.T, cfg *config.Agent, o CheckOptions) (string, error) {
	t.Helper()
	if o.ConfigPath == "" {
		o.ConfigPath = "agent.toml"
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	err := Check(ctx, cfg, o, &b)
	out := b.String()
	t.Logf("check output:\n%s", out)
	if strings.Contains(out, checkToken) {
		t.Error("check output holds the token")
	}
	return out, err
}

// wantLine fails unless out has a line with the status, the check name and
// every one of parts.
func wantLine(t *testing.T, out, status, check string, parts ...string) {
	t.Helper()
	for l := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != status || f[1] != check {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no %q %q line containing %q", status, check, parts)
}

func TestCheckAllOK(t *testing.T) {
	g := startCheckGateway(t, time.Now().Add(90*24*time.Hour))
	target := testutil.NewCountingListener(t).Addr
	cfg, _ := agentConfig(t, g, checkToken, "", target)
	out, err := runCheck(t, cfg, CheckOptions{Target: target, Version: "test"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	wantLine(t, out, "ok", "config", "agent.toml is valid", "token from token_file")
	wantLine(t, out, "ok", "gateway", "localhost resolves to 127.0.0.1")
	wantLine(t, out, "firewall", "allow", "outbound TCP from this host to 127.0.0.1 port "+g.port)
	wantLine(t, out, "ok", "connect", "127.0.0.1:"+g.port)
	wantLine(t, out, "ok", "tls", "certificate verifies for localhost", "subject CN=localhost", "self-signed", "in 89 days")
	wantLine(t, out, "ok", "token", "accepted the token (101)", "node n1", "closed")
	wantLine(t, out, "ok", "target", fmt.Sprintf("%q is allowed by rule %q", target, target))
	wantLine(t, out, "ok", "target", target+": TCP connect")
	if !strings.Contains(out, "ferry-agent check: all ") {
		t.Error("no summary line")
	}
	// The gateway saw a drain, then the session ended: a clean close.
	select {
	case <-g.sessions:
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway's session did not end")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.drained) != 1 || g.drained[0] != "ferry-agent check" {
		t.Errorf("gateway got drain reasons %q, want one from ferry-agent check", g.drained)
	}
	if len(g.closed) != 1 || errors.Is(g.closed[0], mux.ErrProtocol) || strings.Contains(g.closed[0].Error(), "did not start") {
		t.Errorf("gateway session ended with %v", g.closed)
	}
}

func TestCheckTokenRefused(t *testing.T) {
	g := startCheckGateway(t, time.Now().Add(90*24*time.Hour))
	for _, tc := range []struct {
		token string
		want  []string
	}{
		{"fat_rotated", []string{"rejected the token (401)", "rotated or revoked", "agent.token"}},
		{"fat_disabled", []string{"(403)", "disabled", "enable it"}},
	} {
		cfg, _ := agentConfig(t, g, tc.token, "", "db.internal:5432")
		out, err := runCheck(t, cfg, CheckOptions{})
		if !errors.Is(err, ErrCheckFailed) {
			t.Errorf("token %s: Check returned %v, want ErrCheckFailed", tc.token, err)
		}
		wantLine(t, out, "ok", "tls")
		wantLine(t, out, "FAIL", "token", tc.want...)
		if strings.Contains(out, tc.token) {
			t.Errorf("output holds the token %s", tc.token)
		}
	}
}

func TestCheckTLSProblems(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		mod      func(cfg *config.Agent, g *checkGateway)
		status   string
		want     []string
	}{
		{"expired", now.Add(-time.Hour), nil, "FAIL", []string{"expired", "renew the gateway certificate"}},
		{"expires soon", now.Add(3*24*time.Hour + time.Hour), nil, "warn", []string{"expires", "in 3 days", "renew it"}},
		{"unknown CA", now.Add(90 * 24 * time.Hour), func(cfg *config.Agent, _ *checkGateway) {
			other, _, err := testutil.WriteCertUntil(t.TempDir(), now.Add(time.Hour), "localhost")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Gateway.CAFile = other
		}, "FAIL", []string{"does not trust", "subject CN=localhost", "ca_file"}},
		{"wrong name", now.Add(90 * 24 * time.Hour), func(cfg *config.Agent, g *checkGateway) {
			cfg.Gateway.URL = "wss://127.0.0.1:" + g.port + "/v1/tunnel"
		}, "FAIL", []string{"not valid for 127.0.0.1", "gateway.url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startCheckGateway(t, tc.notAfter)
			cfg, _ := agentConfig(t, g, checkToken, "", "db.internal:5432")
			if tc.mod != nil {
				tc.mod(cfg, g)
			}
			out, err := runCheck(t, cfg, CheckOptions{})
			wantLine(t, out, tc.status, "tls", tc.want...)
			if tc.status == "FAIL" {
				if !errors.Is(err, ErrCheckFailed) {
					t.Errorf("Check returned %v, want ErrCheckFailed", err)
				}
				wantLine(t, out, "skip", "token", "not tested")
			} else if err != nil {
				t.Errorf("a warning must not fail the check: %v", err)
			}
		})
	}
}

func TestCheckGatewayUnreachable(t *testing.T) {
	g := startCheckGateway(t, time.Now().Add(90*24*time.Hour))
	cfg, _ := agentConfig(t, g, checkToken, "", "db.internal:5432")
	_, closed, _ := net.SplitHostPort(testutil.ClosedAddr(t))
	cfg.Gateway.URL = "wss://localhost:" + closed + "/v1/tunnel"
	out, err := runCheck(t, cfg, CheckOptions{})
	if !errors.Is(err, ErrCheckFailed) {
		t.Errorf("Check returned %v", err)
	}
	wantLine(t, out, "FAIL", "connect", "127.0.0.1:"+closed, "allow outbound TCP")
	wantLine(t, out, "skip", "token")
}

func TestCheckAllowedIPsExcludeGateway(t *testing.T) {
	g := startCheckGateway(t, time.Now().Add(90*24*time.Hour))
	cfg, _ := agentConfig(t, g, checkToken, "", "db.internal:5432")
	cfg.Gateway.AllowedIPs = []string{"203.0.113.10"}
	cfg.Gateway.AllowedPrefixes = []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}
	out, err := runCheck(t, cfg, CheckOptions{})
	if !errors.Is(err, ErrCheckFailed) {
		t.Errorf("Check returned %v", err)
	}
	wantLine(t, out, "FAIL", "gateway", "allowed_ips")
}

func TestCheckTargets(t *testing.T) {
	g := startCheckGateway(t, time.Now().Add(90*24*time.Hour))
	target := testutil.NewCountingListener(t).Addr
	_, port, _ := net.SplitHostPort(target)
	cfg, _ := agentConfig(t, g, checkToken, "",
		"db.internal:5432", "*.corp.example:443", "127.0.0.0/8:"+port, "10.0.0.0/8:6000")
	for _, tc := range []struct {
		target string
		status string
		want   []string
	}{
		{"db.internal:5432", "ok", []string{`"db.internal:5432" is allowed by rule "db.internal:5432"`}},
		{"db.internal:5433", "FAIL", []string{`"db.internal:5433" is denied`, `add "db.internal:5433" to [access] allow`, "SIGHUP"}},
		{"a.b.corp.example:443", "ok", []string{`allowed by rule "*.corp.example:443"`}},
		{"localhost:" + port, "ok", []string{"localhost resolves to 127.0.0.1: allowed by rule \"127.0.0.0/8:" + port + "\""}},
		{"localhost:6000", "FAIL", []string{"localhost resolves to 127.0.0.1: no rule admits 127.0.0.1:6000"}},
		{"2130706433:80", "FAIL", []string{"host:port"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			out, _ := runCheck(t, cfg, CheckOptions{Target: tc.target})
			wantLine(t, out, tc.status, "target", tc.want...)
		})
	}
	// A target the allow-list admits but nothing listens on.
	down := testutil.ClosedAddr(t)
	cfg2, _ := agentConfig(t, g, checkToken, "", down)
	out, err := runCheck(t, cfg2, CheckOptions{Target: down})
	if !errors.Is(err, ErrCheckFailed) {
		t.Errorf("unreachable target: Check returned %v", err)
	}
	wantLine(t, out, "ok", "target", "is allowed by rule")
	wantLine(t, out, "FAIL", "target", "cannot connect to "+down)
}

func TestCheckThroughProxy(t *testing.T) {
	g := startCheckGateway(t, time.Now().Add(90*24*time.Hour))
	for _, tc := range []struct {
		name   string
		answer string // "" forwards
		status string
		want   []string
	}{
		{"ok", "", "ok", []string{"CONNECT 127.0.0.1:" + g.port + " accepted"}},
		{"auth", "407 Proxy Authentication Required", "FAIL", []string{"authentication required", "http://user:password@host:port"}},
		{"forbidden", "403 Forbidden", "FAIL", []string{"refused CONNECT 127.0.0.1:" + g.port, "403 Forbidden", "allow CONNECT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testutil.NewConnectProxy(t, tc.answer)
			proxy := p.Addr
			cfg, _ := agentConfig(t, g, checkToken, fmt.Sprintf("proxy = %q\n", "http://user:pw-secret@"+proxy))
			out, err := runCheck(t, cfg, CheckOptions{})
			_, pport, _ := net.SplitHostPort(proxy)
			wantLine(t, out, "firewall", "allow", "to 127.0.0.1 port "+pport+" (the proxy 127.0.0.1)")
			wantLine(t, out, "firewall", "the", "proxy must allow CONNECT to 127.0.0.1:"+g.port)
			wantLine(t, out, tc.status, "proxy", tc.want...)
			if strings.Contains(out, "pw-secret") {
				t.Error("output holds the proxy password")
			}
			if tc.status == "ok" {
				if err != nil {
					t.Errorf("Check: %v", err)
				}
				wantLine(t, out, "ok", "token", "accepted")
				if r := <-p.Requests; r.Auth == "" || r.Target != "127.0.0.1:"+g.port {
					t.Errorf("proxy got %+v", r)
				}
			} else if !errors.Is(err, ErrCheckFailed) {
				t.Errorf("Check returned %v", err)
			}
		})
	}
}

func TestCheckConfigFailed(t *testing.T) {
	var b strings.Builder
	err := CheckConfigFailed(&b, "agent.toml", errors.Join(errors.New("agent.toml: unknown key \"gatway\""), errors.New("agent.toml: gateway.url is required")))
	if !errors.Is(err, ErrCheckFailed) {
		t.Fatal(err)
	}
	out := b.String()
	wantLine(t, out, "FAIL", "config", "unknown key")
	wantLine(t, out, "FAIL", "config", "gateway.url is required")
}
