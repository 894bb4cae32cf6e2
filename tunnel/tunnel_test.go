package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const goodToken = "fat_good"

// gateway is a TLS server for localhost running Handler.
type gateway struct {
	addr     string // 127.0.0.1:port
	caFile   string
	draining bool
	peers    chan Peer
	limiter  *Limiter
}

func startGateway(t *testing.T) *gateway {
	t.Helper()
	ln, caFile := testutil.ListenTLS(t, time.Now().Add(time.Hour), "localhost")
	g := &gateway{addr: ln.Addr().String(), caFile: caFile, peers: make(chan Peer, 16), limiter: NewLimiter(3, nil)}
	var mu sync.Mutex
	h := NewHandler(HandlerConfig{
		Authenticate: func(_ context.Context, token string) (Identity, error) {
			switch token {
			case goodToken:
				return Identity{Agent: "acme"}, nil
			case "fat_disabled":
				return Identity{Agent: "acme"}, ErrDisabled
			}
			return Identity{}, ErrUnauthorized
		},
		Serve: func(conn net.Conn, p Peer) {
			g.peers <- p
			conn.Write([]byte("hi"))
			io.Copy(io.Discard, conn)
			conn.Close()
		},
		Draining: func() bool { mu.Lock(); defer mu.Unlock(); return g.draining },
		Limiter:  g.limiter,
	})
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return g
}

func (g *gateway) dialer(t *testing.T, token string, mod func(*DialConfig)) *Dialer {
	t.Helper()
	_, port, _ := net.SplitHostPort(g.addr)
	cfg := DialConfig{
		URL:      "wss://localhost:" + port + "/v1/tunnel",
		Token:    func() (string, error) { return token, nil },
		Version:  "1.2.3",
		Instance: "inst-1",
		Hostname: "host-1",
		CAFile:   g.caFile,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var loopback = netip.MustParseAddr("127.0.0.1")

// caPool is the gateway's certificate as a pool of roots.
func (g *gateway) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(g.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", g.caFile)
	}
	return pool
}

func TestDialAuthenticates(t *testing.T) {
	g := startGateway(t)
	conn, err := g.dialer(t, goodToken, nil).Dial(context.Background(), context.Background(), loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
	p := <-g.peers
	if p.Agent != "acme" || p.Version != "1.2.3" || p.Instance != "inst-1" || p.Hostname != "host-1" {
		t.Fatalf("peer %+v", p)
	}
}

func TestDialRejections(t *testing.T) {
	g := startGateway(t)
	for _, tc := range []struct {
		token string
		want  error
	}{
		{"fat_wrong", ErrTokenRejected},
		{"fat_disabled", ErrAgentDisabled},
	} {
		_, err := g.dialer(t, tc.token, nil).Dial(context.Background(), context.Background(), loopback)
		if !errors.Is(err, tc.want) {
			t.Errorf("token %s: got %v, want %v", tc.token, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("error reveals the token: %v", err)
		}
	}
	if !NeedsOperator(ErrTokenRejected) || NeedsOperator(ErrRateLimited) {
		t.Error("NeedsOperator misclassifies")
	}
}

func TestFailedHandshakesAreRateLimited(t *testing.T) {
	g := startGateway(t)
	bad := g.dialer(t, "fat_wrong", nil)
	var last error
	for range 5 {
		_, last = bad.Dial(context.Background(), context.Background(), loopback)
	}
	if !errors.Is(last, ErrRateLimited) {
		t.Fatalf("after 5 failures: %v, want ErrRateLimited", last)
	}
	// The limit is per address and counts failures: a good token from the
	// same address is refused too until the minute has passed.
	if _, err := g.dialer(t, goodToken, nil).Dial(context.Background(), context.Background(), loopback); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("good token while limited: %v", err)
	}
}

func TestDrainingGatewayAnswers503(t *testing.T) {
	g := startGateway(t)
	g.draining = true
	_, err := g.dialer(t, goodToken, nil).Dial(context.Background(), context.Background(), loopback)
	if !errors.Is(err, ErrGatewayDraining) {
		t.Fatalf("got %v, want ErrGatewayDraining", err)
	}
}

func TestWrongCAFails(t *testing.T) {
	g := startGateway(t)
	ca, _, err := testutil.WriteCert(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.dialer(t, goodToken, func(c *DialConfig) { c.CAFile = ca }).Dial(context.Background(), context.Background(), loopback)
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Fatalf("got %v, want unknown authority", err)
	}
}

func TestAllowedIPs(t *testing.T) {
	g := startGateway(t)
	d := g.dialer(t, goodToken, func(c *DialConfig) { c.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")} })
	if _, err := d.Resolve(context.Background()); !errors.Is(err, ErrNoGatewayIP) {
		t.Fatalf("resolve: %v, want ErrNoGatewayIP", err)
	}
	if _, err := d.Dial(context.Background(), context.Background(), loopback); !errors.Is(err, ErrNoGatewayIP) {
		t.Fatalf("dial: %v, want ErrNoGatewayIP", err)
	}
	ok := g.dialer(t, goodToken, func(c *DialConfig) { c.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	ips, err := ok.Resolve(context.Background())
	if err != nil || len(ips) == 0 || !ips[0].Is4() {
		t.Fatalf("resolve: %v %v", ips, err)
	}
}

// TestProxyConnectsToChosenIP: through an HTTP proxy the agent asks for the
// allowed IP, not the name, so allowed_ips holds; TLS still checks the name.
func TestProxyConnectsToChosenIP(t *testing.T) {
	g := startGateway(t)
	proxy := testutil.NewConnectProxy(t, "")
	proxyAddr := proxy.Addr
	d := g.dialer(t, goodToken, func(c *DialConfig) {
		c.Proxy = "http://user:secret@" + proxyAddr
		c.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	conn, err := d.Dial(context.Background(), context.Background(), loopback)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	got := <-proxy.Requests
	if got.Target != g.addr {
		t.Fatalf("proxy asked for %q, want the chosen IP %q", got.Target, g.addr)
	}
	if got.Auth == "" {
		t.Fatal("proxy credentials not sent")
	}
}

func TestReconnectBackoff(t *testing.T) {
	t.Parallel()
	r := Reconnect{InitialInterval: time.Millisecond, MaxInterval: 8 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	var waits []time.Duration
	calls := 0
	r.Run(ctx, func(context.Context) (time.Duration, error) {
		calls++
		if calls == 6 {
			return 0, ErrTokenRejected
		}
		return 0, errors.New("refused")
	}, func(err error, d time.Duration) {
		waits = append(waits, d)
		if len(waits) == 8 {
			cancel()
		}
	})
	for i, w := range waits {
		if w > r.MaxInterval {
			t.Errorf("wait %d = %v exceeds max", i, w)
		}
	}
	if waits[5] != r.MaxInterval {
		t.Errorf("after a rejected token waited %v, want the max %v", waits[5], r.MaxInterval)
	}
	if waits[4] <= waits[0] {
		t.Errorf("backoff did not grow: %v", waits)
	}
}

func TestLimiterWindow(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l := NewLimiter(2, func() time.Time { return now })
	l.Fail("a")
	l.Fail("a")
	if l.Allow("a") || !l.Allow("b") {
		t.Fatal("limit not per address")
	}
	now = now.Add(time.Minute)
	if !l.Allow("a") {
		t.Fatal("limit did not expire")
	}
}

// TestProxyRefusalIsReported checks the error of a tunnel the proxy
// refuses: it says what the proxy answered and holds neither the proxy's
// user name nor its password.
func TestProxyRefusalIsReported(t *testing.T) {
	g := startGateway(t)
	proxy := testutil.NewConnectProxy(t, "407 Proxy Authentication Required")
	d := g.dialer(t, goodToken, func(c *DialConfig) { c.Proxy = "http://user:secret@" + proxy.Addr })
	_, err := d.Dial(context.Background(), context.Background(), loopback)
	var pe *ProbeError
	var se *ProxyStatusError
	if !errors.As(err, &pe) || pe.Step != StepProxy || !errors.As(err, &se) || se.Code != 407 {
		t.Fatalf("dial through a refusing proxy: %v, want a proxy step error with 407", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "407") || strings.Contains(msg, "secret") || strings.Contains(msg, "user") {
		t.Errorf("error %q: want the proxy's answer and no credentials", msg)
	}
}

// TestCAFileSparesSystemRoots: a gateway that ca_file vouches for is
// trusted without loading the system roots; one it does not vouch for is
// checked against them.
func TestCAFileSparesSystemRoots(t *testing.T) {
	g := startGateway(t)
	gatewayCA := g.caPool(t)
	otherCA, _, err := testutil.WriteCert(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		caFile     string
		system     *x509.CertPool
		wantSystem bool // the system roots were consulted
		wantErr    bool
	}{
		{"ca_file vouches", g.caFile, x509.NewCertPool(), false, false},
		{"system roots vouch", otherCA, gatewayCA, true, false},
		{"nobody vouches", otherCA, x509.NewCertPool(), true, true},
		{"no ca_file", "", gatewayCA, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := g.dialer(t, goodToken, func(c *DialConfig) { c.CAFile = tt.caFile })
			consulted := false
			d.roots.system = func() (*x509.CertPool, error) { consulted = true; return tt.system, nil }
			conn, err := d.Dial(context.Background(), context.Background(), loopback)
			if err == nil {
				conn.Close()
			}
			var verr *tls.CertificateVerificationError
			if tt.wantErr != (err != nil) || (tt.wantErr && !errors.As(err, &verr)) {
				t.Fatalf("dial: %v, want a verification error: %v", err, tt.wantErr)
			}
			if consulted != tt.wantSystem {
				t.Errorf("system roots consulted: %v, want %v", consulted, tt.wantSystem)
			}
		})
	}
}

// TestGatewayNameVerified: a certificate for another name is refused,
// whichever roots vouch for it, and a dialer never verifies without a name.
func TestGatewayNameVerified(t *testing.T) {
	g := startGateway(t)
	gatewayCA := g.caPool(t)
	_, port, _ := net.SplitHostPort(g.addr)
	for _, caFile := range []string{g.caFile, ""} { // ca_file's roots, the system's
		d := g.dialer(t, goodToken, func(c *DialConfig) {
			c.URL = "wss://gw.example:" + port + "/v1/tunnel"
			c.CAFile = caFile
		})
		d.roots.system = func() (*x509.CertPool, error) { return gatewayCA, nil }
		_, err := d.Dial(context.Background(), context.Background(), loopback)
		var herr x509.HostnameError
		if !errors.As(err, &herr) {
			t.Errorf("ca_file %q: dial gw.example with a certificate for localhost: %v, want a host name error", caFile, err)
		}
	}
	r := &roots{extra: gatewayCA, system: func() (*x509.CertPool, error) { return gatewayCA, nil }}
	if _, err := r.verify("", []*x509.Certificate{{}}); err == nil {
		t.Error("verify with no server name succeeded")
	}
	for _, proxy := range []string{"https://:3128", "http://user:pw@:8080"} {
		if _, err := NewDialer(DialConfig{URL: "wss://gw.example/v1/tunnel", Token: func() (string, error) { return "t", nil }, Proxy: proxy}); err == nil {
			t.Errorf("proxy %q without a host name accepted", proxy)
		}
	}
}

// TestHTTPSProxy: through an https:// proxy the agent verifies the proxy's
// certificate for the proxy's name, as it verifies the gateway's.
func TestHTTPSProxy(t *testing.T) {
	g := startGateway(t)
	proxy, proxyCA := testutil.NewTLSConnectProxy(t, "localhost")
	_, port, _ := net.SplitHostPort(proxy.Addr)
	gwPEM, err := os.ReadFile(g.caFile)
	if err != nil {
		t.Fatal(err)
	}
	proxyPEM, err := os.ReadFile(proxyCA)
	if err != nil {
		t.Fatal(err)
	}
	both := filepath.Join(t.TempDir(), "both.pem")
	if err := os.WriteFile(both, append(gwPEM, proxyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		caFile string
		proxy  string
		ok     bool
	}{
		{"proxy trusted", both, "https://localhost:" + port, true},
		{"proxy not trusted", g.caFile, "https://localhost:" + port, false},
		{"proxy under another name", both, "https://127.0.0.1:" + port, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := g.dialer(t, goodToken, func(c *DialConfig) { c.CAFile, c.Proxy = tt.caFile, tt.proxy })
			d.roots.system = func() (*x509.CertPool, error) { return x509.NewCertPool(), nil }
			conn, err := d.Dial(context.Background(), context.Background(), loopback)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
				if got := <-proxy.Requests; got.Target != g.addr {
					t.Errorf("proxy asked for %q, want %q", got.Target, g.addr)
				}
				return
			}
			var pe *ProbeError
			var ve *tls.CertificateVerificationError
			if !errors.As(err, &pe) || pe.Step != StepProxy || !errors.As(err, &ve) {
				t.Fatalf("dial: %v, want a certificate error at the proxy step", err)
			}
		})
	}
}
