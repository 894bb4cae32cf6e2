package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Handshake headers sent by the agent.
const (
	HeaderVersion  = "Ferry-Agent-Version"
	HeaderInstance = "Ferry-Agent-Instance"
	HeaderHostname = "Ferry-Agent-Hostname"
)

// DialConfig configures a Dialer. Zero values take the documented defaults.
type DialConfig struct {
	// URL is the gateway's tunnel endpoint, wss://host[:port]/v1/tunnel.
	URL string
	// Token returns the agent token for each attempt, so that a rotated
	// token written to the token file is picked up without a restart.
	Token func() (string, error)
	// Version, Instance and Hostname identify the agent in the handshake.
	Version, Instance, Hostname string
	// CAFile adds PEM roots to the system's for the gateway certificate; the
	// system's are loaded only for a certificate these do not vouch for.
	CAFile string
	// Proxy is an explicit HTTP proxy URL; empty means HTTPS_PROXY/NO_PROXY
	// from the environment.
	Proxy string
	// AllowedIPs, when not empty, are the only gateway addresses the agent
	// connects to, also through a proxy.
	AllowedIPs []netip.Prefix
	// HandshakeTimeout bounds TCP, proxy, TLS and WebSocket set-up. Default 15s.
	HandshakeTimeout time.Duration
	// Resolver looks the gateway name up; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Dialer opens tunnels to one gateway. It is safe for concurrent use.
type Dialer struct {
	cfg      DialConfig
	base     *url.URL // the configured URL
	host     string   // gateway host name, the TLS server name
	port     string
	tls      *tls.Config
	roots    *roots
	proxyURL *url.URL // nil: direct
	resolver *net.Resolver
}

// NewDialer checks cfg and prepares TLS and proxy settings.
func NewDialer(cfg DialConfig) (*Dialer, error) {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 15 * time.Second
	}
	if cfg.Token == nil {
		return nil, errors.New("tunnel dialer: no token source")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("gateway url: %w", err)
	}
	if u.Scheme != "wss" {
		return nil, fmt.Errorf("gateway url %q: scheme must be wss", cfg.URL)
	}
	d := &Dialer{cfg: cfg, base: u, host: u.Hostname(), port: u.Port(), resolver: cfg.Resolver}
	if d.port == "" {
		d.port = "443"
	}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	d.roots = &roots{system: sync.OnceValues(x509.SystemCertPool)}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		d.roots.extra = x509.NewCertPool()
		if !d.roots.extra.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", cfg.CAFile)
		}
	}
	d.tls = d.roots.config(d.host)
	if cfg.Proxy != "" {
		p, err := url.Parse(cfg.Proxy)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Hostname() == "" {
			return nil, fmt.Errorf("proxy %q: want http://[user:pass@]host:port", redactURL(cfg.Proxy))
		}
		d.proxyURL = p
	} else {
		// Ask the environment about the gateway's own name, so that NO_PROXY
		// entries naming it apply although we connect to an IP.
		req := &http.Request{URL: &url.URL{Scheme: "https", Host: net.JoinHostPort(d.host, d.port)}}
		p, err := http.ProxyFromEnvironment(req)
		if err != nil {
			return nil, fmt.Errorf("proxy from environment: %w", err)
		}
		if p != nil && p.Hostname() == "" {
			return nil, fmt.Errorf("proxy from the environment %q has no host name", p.Redacted())
		}
		d.proxyURL = p
	}
	return d, nil
}

// Host is the gateway host name from the URL.
func (d *Dialer) Host() string { return d.host }

// Port is the gateway port (443 unless the URL says otherwise).
func (d *Dialer) Port() string { return d.port }

// ProxyURL is the proxy tunnels go through, nil when direct. Its password
// is not redacted: do not log it, use Redacted.
func (d *Dialer) ProxyURL() *url.URL { return d.proxyURL }

// Resolve returns the gateway's addresses that allowed_ips permits, in the
// resolver's order without duplicates.
func (d *Dialer) Resolve(ctx context.Context) ([]netip.Addr, error) {
	var all []netip.Addr
	if ip, err := netip.ParseAddr(d.host); err == nil {
		all = []netip.Addr{ip.Unmap()}
	} else {
		addrs, err := d.resolver.LookupNetIP(ctx, "ip", d.host)
		if err != nil {
			return nil, fmt.Errorf("resolve gateway %s: %w", d.host, err)
		}
		for _, a := range addrs {
			if a = a.Unmap(); !slices.Contains(all, a) {
				all = append(all, a)
			}
		}
	}
	if len(d.cfg.AllowedIPs) == 0 {
		return all, nil
	}
	var ok []netip.Addr
	for _, a := range all {
		if slices.ContainsFunc(d.cfg.AllowedIPs, func(p netip.Prefix) bool { return p.Contains(a) }) {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%w: gateway %s resolves to %v, none within allowed_ips %v: fix allowed_ips or the gateway's DNS", ErrNoGatewayIP, d.host, all, d.cfg.AllowedIPs)
	}
	return ok, nil
}

// Dial opens a tunnel to the gateway at ip and returns its byte stream.
// ctx bounds the handshake; life bounds the returned connection (cancelling
// it closes the tunnel).
func (d *Dialer) Dial(ctx, life context.Context, ip netip.Addr) (net.Conn, error) {
	if len(d.cfg.AllowedIPs) > 0 && !slices.ContainsFunc(d.cfg.AllowedIPs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return nil, fmt.Errorf("%w: %s is outside allowed_ips", ErrNoGatewayIP, ip)
	}
	token, err := d.cfg.Token()
	if err != nil {
		return nil, err
	}
	target := net.JoinHostPort(ip.String(), d.port)
	ctx, cancel := context.WithTimeout(ctx, d.cfg.HandshakeTimeout)
	defer cancel()

	// The transport gets a connection past TLS, made as Probe makes it (the
	// proxy's CONNECT included), so that the gathering layers sit on both
	// sides of TLS: see batchedStream.
	var layers []*batchConn
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != target {
				return nil, fmt.Errorf("refusing to dial %s: not the chosen gateway address %s", addr, target)
			}
			// The transport dials on a context stripped of the request's
			// deadline: bound the dial again.
			ctx, cancel := context.WithTimeout(ctx, d.cfg.HandshakeTimeout)
			defer cancel()
			var res ProbeResult
			tc, under, err := d.connect(ctx, target, &res)
			if err != nil {
				return nil, err
			}
			above := &batchConn{Conn: tc}
			layers = []*batchConn{above, under}
			return above, nil
		},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			return fmt.Errorf("gateway redirected to %s: set gateway.url to the final address", req.URL.Redacted())
		},
	}
	u := *d.base
	u.Host = target
	if u.Path == "" {
		u.Path = "/v1/tunnel"
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set(HeaderVersion, d.cfg.Version)
	h.Set(HeaderInstance, d.cfg.Instance)
	h.Set(HeaderHostname, d.cfg.Hostname)
	host := d.host
	if d.port != "443" {
		host = net.JoinHostPort(d.host, d.port)
	}
	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient:      hc,
		HTTPHeader:      h,
		Host:            host,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, d.handshakeError(resp, err)
	}
	return tunnelStream(life, c, layers...), nil
}

func (d *Dialer) handshakeError(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return fmt.Errorf("tunnel handshake with %s: %w", d.host, err)
	}
	var body string
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		body = strings.TrimSpace(string(b))
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return ErrTokenRejected
	case http.StatusForbidden:
		return ErrAgentDisabled
	case http.StatusTooManyRequests:
		return ErrRateLimited
	case http.StatusServiceUnavailable:
		return ErrGatewayDraining
	}
	return &StatusError{Code: resp.StatusCode, Body: body}
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Probe steps, in the order Probe takes them.
const (
	StepConnect = "connect" // TCP to the gateway address, or to the proxy
	StepProxy   = "proxy"   // the proxy's answer to CONNECT
	StepTLS     = "tls"     // TLS handshake and certificate verification
)

// ProbeError says which step of [Dialer.Probe] failed. A failed
// certificate verification leaves a *tls.CertificateVerificationError in
// the chain, which holds the certificates the gateway presented.
type ProbeError struct {
	Step string // StepConnect, StepProxy or StepTLS
	Err  error
}

func (e *ProbeError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Step+": ") { // crypto/tls's own "tls: …"
		return msg
	}
	return e.Step + ": " + msg
}
func (e *ProbeError) Unwrap() error { return e.Err }

// ProxyStatusError is a proxy's refusal of CONNECT (any status but 2xx).
type ProxyStatusError struct {
	Code   int
	Status string // as the proxy wrote it, such as "403 Forbidden"
}

func (e *ProxyStatusError) Error() string { return "proxy answered " + e.Status + " to CONNECT" }

// ProbeResult is what [Dialer.Probe] learned about one gateway address.
type ProbeResult struct {
	// Address is the gateway ip:port the probe reached.
	Address string
	// Proxy is the proxy it went through (password redacted), "" when direct.
	Proxy string
	// ConnectTime is the TCP connect time to the gateway, or to the proxy.
	ConnectTime time.Duration
	// TLS is the verified connection's state: VerifiedChains[0][0] is the
	// gateway certificate.
	TLS tls.ConnectionState
}

// Probe checks the path to the gateway at ip without authenticating: it
// connects (through the proxy when one is set, asking it to CONNECT to
// ip:port), completes a TLS handshake verified for the gateway host name
// exactly as Dial does, and closes the connection. It sends no token.
// Errors are *ProbeError. ctx and the handshake timeout bound it.
func (d *Dialer) Probe(ctx context.Context, ip netip.Addr) (ProbeResult, error) {
	res := ProbeResult{Address: net.JoinHostPort(ip.String(), d.port)}
	if len(d.cfg.AllowedIPs) > 0 && !slices.ContainsFunc(d.cfg.AllowedIPs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return res, &ProbeError{StepConnect, fmt.Errorf("%w: %s is outside allowed_ips", ErrNoGatewayIP, ip)}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.HandshakeTimeout)
	defer cancel()
	tc, _, err := d.connect(ctx, res.Address, &res)
	if err != nil {
		return res, err
	}
	res.TLS = tc.ConnectionState()
	res.TLS.VerifiedChains, _ = d.roots.verify(d.host, res.TLS.PeerCertificates)
	tc.Close()
	return res, nil
}

// connect opens a TLS connection to the gateway address target: TCP to it
// or to the proxy, the proxy's CONNECT, and the TLS handshake verified for
// the gateway host name. ctx bounds every step; the connection returned
// has no deadline. under is the TCP connection below TLS, for batching.
// It fills in res's Proxy and ConnectTime; errors are *ProbeError.
func (d *Dialer) connect(ctx context.Context, target string, res *ProbeResult) (tc *tls.Conn, under *batchConn, err error) {
	dialAddr := target
	if d.proxyURL != nil {
		res.Proxy = d.proxyURL.Redacted()
		dialAddr = proxyAddr(d.proxyURL)
	}
	start := time.Now()
	nd := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := nd.DialContext(ctx, "tcp", dialAddr)
	if err != nil {
		return nil, nil, &ProbeError{StepConnect, err}
	}
	res.ConnectTime = time.Since(start)
	under = &batchConn{Conn: raw}
	var conn net.Conn = under
	defer func() {
		if err != nil {
			raw.Close() // also ends the TLS layers on top
		}
	}()
	// Until connect returns, every read and write ends when ctx does.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer func() {
		if !stop() && err == nil {
			err = &ProbeError{StepTLS, fmt.Errorf("handshake with %s: %w", target, context.Cause(ctx))}
		}
	}()

	if d.proxyURL != nil {
		if d.proxyURL.Scheme == "https" {
			pc := d.roots.config(d.proxyURL.Hostname())
			pc.NextProtos = nil
			ptc := tls.Client(conn, pc)
			if err := ptc.HandshakeContext(ctx); err != nil {
				return nil, nil, &ProbeError{StepProxy, fmt.Errorf("TLS to proxy %s: %w", proxyAddr(d.proxyURL), err)}
			}
			conn = ptc
		}
		pc, err := proxyConnect(conn, d.proxyURL, target)
		if err != nil {
			return nil, nil, &ProbeError{StepProxy, err}
		}
		conn = pc
	}
	tc = tls.Client(conn, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, &ProbeError{StepTLS, err}
	}
	return tc, under, nil
}

// proxyAddr is the proxy's host:port, with the scheme's default port.
func proxyAddr(p *url.URL) string {
	port := p.Port()
	if port == "" {
		port = "80"
		if p.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(p.Hostname(), port)
}

// proxyConnect asks the proxy on conn to CONNECT to target and returns the
// connection to use from then on.
func proxyConnect(conn net.Conn, p *url.URL, target string) (net.Conn, error) {
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: target},
		Host:   target,
		Header: http.Header{},
	}
	if p.User != nil {
		pass, _ := p.User.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(p.User.Username()+":"+pass)))
	}
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("send CONNECT %s: %w", target, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("read the answer to CONNECT %s: %w", target, err)
	}
	// The body is not read: after 2xx there is none, and after a refusal
	// the caller closes the connection.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &ProxyStatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// roots are the certificate authorities the agent trusts: ca_file's and
// the system's. The system's are loaded only when ca_file's do not vouch
// for a certificate: parsing the system bundle (about 140 roots) costs an
// agent 2.7 MiB of RSS for good, which one that trusts its gateway through
// ca_file never needs.
type roots struct {
	extra  *x509.CertPool                 // ca_file; nil when none
	system func() (*x509.CertPool, error) // loaded on first use, once
}

// config is the TLS client configuration for server name. Verification is
// the standard one (chain, validity, server-auth usage, host name), done
// by verify so that the system roots can wait until they are needed; the
// handshake fails on any error verify returns.
func (r *roots) config(name string) *tls.Config {
	return &tls.Config{
		ServerName: name,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// Not skipped: VerifyConnection below verifies every handshake,
		// resumptions included.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := r.verify(name, cs.PeerCertificates)
			return err
		},
	}
}

// verify checks the chain certs (leaf first, as the server sent it) for
// name against ca_file's roots, then the system's. Errors are
// *tls.CertificateVerificationError, as crypto/tls's own.
func (r *roots) verify(name string, certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	if name == "" { // x509 would skip the host name check
		return nil, errors.New("no server name to verify the certificate against")
	}
	if len(certs) == 0 {
		return nil, errors.New("the server sent no certificate")
	}
	opts := x509.VerifyOptions{DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	var extraErr error
	if r.extra != nil {
		opts.Roots = r.extra
		chains, err := certs[0].Verify(opts)
		if err == nil {
			return chains, nil
		}
		if !errors.As(err, new(x509.UnknownAuthorityError)) {
			return nil, &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
		}
		extraErr = err
	}
	sys, err := r.system()
	if err != nil || sys == nil {
		if extraErr == nil {
			extraErr = fmt.Errorf("no system roots to verify against: %v", err)
		}
		return nil, &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: extraErr}
	}
	opts.Roots = sys
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return nil, &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	return chains, nil
}
